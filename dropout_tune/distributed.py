"""The process group of a multi-process run (``accelerate launch``, ``torchrun``): made by an ``Accelerator`` (or the
Trainer's), and ended before the interpreter exits. A gloo group still alive at exit can abort its process with
"terminate called without an active exception" (SIGABRT): its C++ worker threads outlive the interpreter
(pytorch/pytorch#190489); torch does not end the group by itself.

>>> with accelerator_session() as accelerator:  # one process: no Accelerator, no group
...     print(accelerator)
None
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def end_process_group(wait: bool = True) -> None:
    """Destroy the default process group, if there is one. ``wait``: first a barrier, so that no rank ends the group
    while another still talks to it (leave it off after an error, when the others may never arrive)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def accelerator_session(**kwargs: Any) -> Iterator[Any]:
    """An ``accelerate.Accelerator(**kwargs)`` when launched with several processes, else None; leaving the block
    ends the process group (after every rank has left it, unless an error is on its way out)."""
    if launched_processes() <= 1:
        yield None
        return
    from accelerate import Accelerator

    accelerator = Accelerator(**kwargs)
    finished = False
    try:
        yield accelerator
        finished = True
    finally:
        end_process_group(wait=finished)
