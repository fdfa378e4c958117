"""Worker processes on one machine: ``run_workers(target, payload, k)`` calls ``target(payload, index)`` in ``k``
fresh (spawned) processes, each pinned to its own GPU where there are several; with ``k == 1`` it runs here.

Workers coordinate only through the storage they share, so the same target also runs on other machines (start the
same command there with the same ``--storage``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_workers(target: Callable[[Any, int], None], payload: Any, workers: int) -> None:
    """Run ``target(payload, i)`` for ``i`` in ``range(workers)``, in parallel processes when ``workers > 1``.

    ``target`` must be a module-level function and ``payload`` picklable. A worker that fails raises a
    RuntimeError here after the others finish (its own traceback is in its output).
    """
    if workers < 1:
        raise ValueError(f"--workers: {workers} must be >= 1")
    if workers == 1:
        target(payload, 0)
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked CUDA or thread state
    devices = _device_count()
    processes = []
    for index in range(workers):
        env = {"CUDA_VISIBLE_DEVICES": str(index % devices)} if devices > 1 else {}
        with _environ(env):  # a spawned child reads its environment at start
            process = context.Process(target=target, args=(payload, index), name=f"dropout-tune-worker-{index}")
            process.start()
        processes.append(process)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        raise
    failed = [(i, p.exitcode) for i, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        index, code = failed[0]
        raise RuntimeError(f"worker {index} exited with code {code} (its error is printed above); rerun the same "
                           f"command to continue")
