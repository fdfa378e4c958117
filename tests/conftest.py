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


# ---- a real PostgreSQL server for the storage tests ------------------------------------------------------------------

POSTGRES_URL_ENV = "DROPOUT_TUNE_TEST_POSTGRES_URL"  # an existing server to use instead of starting one


def _postgres_bin_dir():
    """The directory of the distribution's PostgreSQL server binaries (``initdb``, ``pg_ctl``), or None."""
    import glob
    import shutil
    from pathlib import Path

    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A PostgreSQL server for this test session: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free
    localhost port, stopped at the end. Yields a function ``new_database() -> SQLAlchemy URL`` (a fresh database each
    call, ``postgresql+psycopg://...``). As root (CI), the server runs as the ``postgres`` user, which initdb
    requires. Skips, with the reason, only when no server binary is installed (``apt-get install postgresql``)."""
    import itertools
    import shutil
    import tempfile
    from pathlib import Path

    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'dropout-tune[postgres]'")
    external = os.environ.get(POSTGRES_URL_ENV)
    counter = itertools.count()
    if external:
        base, server = external.rstrip("/"), None
    else:
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            pytest.skip("no PostgreSQL server binary (initdb, pg_ctl) installed: apt-get install postgresql")
        data = Path(tempfile.mkdtemp(prefix="dropout-tune-pg-"))  # not under pytest's root-only tmp dirs
        wrap: list = []
        if os.geteuid() == 0:  # initdb and the server refuse to run as root
            shutil.chown(data, "postgres", "postgres")
            wrap = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        log = data / "server.log"
        run_process([*wrap, bin_dir / "initdb", "-D", data / "db", "-U", "dropout", "--auth=trust", "-E", "UTF8"])
        run_process([*wrap, bin_dir / "pg_ctl", "-D", data / "db", "-l", log, "-w", "-t", "60", "start", "-o",
                     f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200"])
        base, server = f"postgresql+psycopg://dropout@127.0.0.1:{port}", (wrap, bin_dir, data)

    def new_database() -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(counter)}"
        with psycopg.connect(f"{base.replace('postgresql+psycopg', 'postgresql')}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{base}/{name}"

    try:
        yield new_database
    finally:
        if server is not None:
            wrap, bin_dir, data = server
            subprocess.run([*wrap, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop"],
                           capture_output=True)
            shutil.rmtree(data, ignore_errors=True)
