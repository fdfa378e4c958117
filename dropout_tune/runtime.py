"""Facts about the running process: rank, the model inside wrappers, per-rank seeds.

>>> is_main_process()
True
>>> rank_seed(1, 0) != rank_seed(0, 1)
True
"""

from __future__ import annotations

import os

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
