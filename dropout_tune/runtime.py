"""Facts about the running process: rank, the model inside wrappers, per-rank seeds, the Trainer's step count,
random streams kept apart.

>>> is_main_process()
True
>>> rank_seed(1, 0) != rank_seed(0, 1)
True
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator

from torch import nn


def process_rank() -> int:
    """This process's global rank, read from the launcher's environment (0 when not launched)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def is_main_process() -> bool:
    """Rank 0 of a distributed run, or the only process."""
    return process_rank() == 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / ``torch.compile`` wrappers, whose config names its family."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


MAX_RANKS = 1 << 20


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of ``rank`` in a distributed run seeded with ``seed``: ``seed * 2**20 + rank``, one-to-one
    over every (seed, rank) pair with rank < 2**20 (``seed + rank`` gave (s, 1) and (s + 1, 0) the same stream).
    It is a 64-bit torch seed; single-process runs keep ``seed`` itself.

    >>> rank_seed(42, 0), rank_seed(42, 1)
    (44040192, 44040193)
    >>> len({rank_seed(s, r) for s in range(50) for r in range(8)})
    400
    """
    if not 0 <= rank < MAX_RANKS:
        raise ValueError(f"rank {rank}: must be in [0, {MAX_RANKS})")
    return int(seed) * MAX_RANKS + int(rank)


def optimizer_steps(n_examples: int, batch_size: int, gradient_accumulation_steps: int = 1, epochs: float = 1.0,
                    max_steps: int = -1, world_size: int = 1, drop_last: bool = False) -> int:
    """Optimizer steps of a full run, counted as the HF Trainer counts them: ``max_steps`` when > 0, else
    ``ceil(epochs * ceil(len_dataloader / gradient_accumulation_steps))`` with at least one update per epoch,
    ``len_dataloader`` being the batches one process sees (its shard of the data).

    >>> optimizer_steps(100, 16, gradient_accumulation_steps=2)  # 7 batches: 3 full accumulations and a partial one
    4
    >>> optimizer_steps(100, 16, epochs=2, world_size=2)
    8
    """
    if max_steps > 0:
        return max_steps
    per_process = math.ceil(n_examples / world_size)  # the distributed sampler pads to equal shards
    batches = per_process // batch_size if drop_last else math.ceil(per_process / batch_size)
    per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1)
    return math.ceil(epochs * per_epoch)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without touching the random streams around it: Python's, NumPy's and torch's (CPU and the
    current accelerator) states are restored afterwards. An evaluation in the middle of training uses it, since
    creating its data loader draws a seed from torch's generator and would shift every later dropout mask.

    >>> import torch
    >>> _ = torch.manual_seed(0); a = torch.rand(1)
    >>> _ = torch.manual_seed(0)
    >>> with preserved_rng():
    ...     _ = torch.rand(5)
    >>> torch.equal(torch.rand(1), a)
    True
    """
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    device_type = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cuda"
    devices = list(range(torch.cuda.device_count())) if device_type == "cuda" else [0]
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
