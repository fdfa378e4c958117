import os
import socket
import subprocess
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


def free_port() -> int:
    """A TCP port no one listens on now: the OS picks it when binding to port 0. Launches get their own port, so
    two test suites on one machine never meet on torch's default 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_process(command: list, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` capturing text output; a failure shows the child's stderr (and stdout) tail."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command[:6]))} ... exited with {result.returncode}\n"
                    f"--- stderr (tail) ---\n{result.stderr[-4000:]}\n--- stdout (tail) ---\n{result.stdout[-2000:]}",
                    pytrace=False)
    return result


@pytest.fixture(scope="session", name="free_port")
def _free_port_fixture():
    """``free_port()`` from a test or fixture: a new unused port per call."""
    return free_port


@pytest.fixture(scope="session", name="run_process")
def _run_process_fixture():
    """``run_process(command, env=..., timeout=...)`` from a test or fixture (see run_process)."""
    return run_process
