"""A browser view of a search: ``optuna-dashboard`` (``pip install 'dropout-tune[dashboard]'``) served over the
search's storage, showing the search study alone.

``tune`` writes ``OUT/search.json`` (storage URL and study name) before its first trial, so the view opens while the
search runs, on whichever backend (``--backend ray`` records its trials in the same study). The confirm stage's and
``compare``'s job studies sit in the same storage (jobs claimed like trials, with fake values): the view lists only
the search study (:class:`OneStudyStorage`), so job bookkeeping never shows as a second "study".

Example:
    >>> search_info("/no/such/dir")
    Traceback (most recent call last):
    ...
    ValueError: dashboard: '/no/such/dir' holds no search (no search.json or study.db); run dropout-tune tune -o there first
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Union

from ..files import atomic_write_text
from . import storage as storage_mod

INFO_FILE = "search.json"


def write_search_info(output_dir: Union[str, Path], storage: str, study: str) -> Path:
    """``OUT/search.json``: where the search's study lives (the dashboard reads it)."""
    path = Path(output_dir) / INFO_FILE
    atomic_write_text(path, json.dumps({"storage": storage, "study": study}, indent=2) + "\n")
    return path


def search_info(output_dir: Union[str, Path]) -> dict[str, str]:
    """The storage URL and study name of the search in ``output_dir`` (``search.json``; an older output with only
    ``study.db`` and one search study is read too)."""
    out = Path(output_dir)
    info = out / INFO_FILE
    if info.is_file():
        data = json.loads(info.read_text(encoding="utf-8"))
        return {"storage": str(data["storage"]), "study": str(data["study"])}
    if (out / "study.db").is_file():
        storage = storage_mod.open_storage(storage_mod.default_storage_url(out))
        names = [s.study_name for s in storage.get_all_studies() if not s.study_name.endswith(".confirm")]
        if len(names) == 1:
            return {"storage": storage_mod.default_storage_url(out), "study": names[0]}
    raise ValueError(f"dashboard: {str(output_dir)!r} holds no search (no search.json or study.db); run "
                     f"dropout-tune tune -o there first")


def _delegate(name: str):
    def method(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


def _one_study_storage_class():
    from optuna.storages import BaseStorage

    class OneStudyStorage(BaseStorage):
        """A storage that lists one study of another storage and forwards every other call to it."""

        def __init__(self, inner: BaseStorage, study_name: str):
            self._inner = inner
            self._study_name = study_name

        def get_all_studies(self):
            return [s for s in self._inner.get_all_studies() if s.study_name == self._study_name]

    for name in BaseStorage.__abstractmethods__ - {"get_all_studies"}:
        setattr(OneStudyStorage, name, _delegate(name))
    OneStudyStorage.__abstractmethods__ = frozenset()
    return OneStudyStorage


def open_search_view(output_dir: Union[str, Path]):
    """``(storage, study name)``: the search's storage showing its search study alone; a one-line ValueError when
    there is no search there or the study is missing from its storage."""
    info = search_info(output_dir)
    inner = storage_mod.open_storage(info["storage"])
    names = [s.study_name for s in inner.get_all_studies()]
    if info["study"] not in names:
        raise ValueError(f"dashboard: study {info['study']!r} is not in {info['storage']!r} (found: "
                         f"{', '.join(names) or 'none'})")
    return _one_study_storage_class()(inner, info["study"]), info["study"]


def check_port(host: str, port: int) -> None:
    """A one-line ValueError when ``port`` is out of range or already taken on ``host``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"--port: {port!r} must be in 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ValueError(f"--port {port}: cannot listen on {host} ({err.strerror or err})") from None


def require_dashboard() -> None:
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError as err:
        raise ValueError(f"dashboard: optuna-dashboard is not installed ({err}); pip install "
                         f"'dropout-tune[dashboard]'") from None


def serve(output_dir: Union[str, Path], host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard over the search in ``output_dir`` until interrupted (every check first)."""
    require_dashboard()
    check_port(host, port)
    storage, _ = open_search_view(output_dir)
    from optuna_dashboard import run_server

    run_server(storage, host=host, port=port)
