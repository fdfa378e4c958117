"""Optuna storage shared by workers: an SQLite file by default, any database URL Optuna accepts
(``postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB`` with ``pip install 'dropout-tune[postgres]'``,
``mysql+pymysql://...``), or ``journal:PATH``: Optuna's ``JournalStorage``, one file that several processes append to
(meant for a shared file system where no database server runs).

Trials heartbeat while they run; a trial whose worker died (killed, machine lost) stops heartbeating and is
marked FAIL by the next worker once ``grace_s`` has passed (``optuna.storages.fail_stale_trials``), so its budget
is used again. A journal file has no heartbeats: a trial whose worker died there stays RUNNING (use a database when
workers may be killed).

Example:
    >>> default_storage_url("/tmp/out")
    'sqlite:////tmp/out/study.db'
    >>> journal_path("journal:/tmp/out/study.log"), journal_path("sqlite:///x.db")
    ('/tmp/out/study.log', None)
    >>> open_storage("not a url")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --storage 'not a url': cannot be opened (...)
"""

from __future__ import annotations

import collections
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

#: seconds between a running trial's heartbeats, and after how long without one it counts as dead
HEARTBEAT_S = 5
GRACE_S = 20
#: opening a new database again after losing a creation race to another process (see _lost_schema_race)
SCHEMA_RACE_ATTEMPTS = 5


def default_storage_url(output_dir: Union[str, "os.PathLike[str]"]) -> str:
    """``sqlite:///<OUT>/study.db`` (absolute, so workers started elsewhere find it)."""
    return f"sqlite:///{Path(output_dir).resolve() / 'study.db'}"


JOURNAL_PREFIX = "journal:"


def journal_path(url: str) -> Union[str, None]:
    """The file of a ``journal:PATH`` storage URL, None for any other URL."""
    return url[len(JOURNAL_PREFIX):] if url.startswith(JOURNAL_PREFIX) else None


def open_storage(url: str, heartbeat_s: Optional[int] = HEARTBEAT_S, grace_s: Optional[int] = GRACE_S):
    """An ``optuna.storages.RDBStorage`` with heartbeats (none when ``heartbeat_s`` is None), or a ``JournalStorage`` for ``journal:PATH``; a URL that
    cannot be opened is a one-line ValueError."""
    import optuna

    path = journal_path(url)
    if path is not None:
        return _open_journal(url, path)
    # heartbeats have been "experimental" since Optuna 2.9; they are the engine's way to find dead trials
    warnings.filterwarnings("ignore", message=".*(heartbeat|fail_stale_trials)",
                            category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several worker processes write one file: wait for the lock instead of failing at once
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        import sqlalchemy.pool

        # a connection per operation, closed after it: a server's connection slots are not held by idle workers,
        # and no pooled connection is left for the garbage collector to drop unclosed
        engine_kwargs["poolclass"] = sqlalchemy.pool.NullPool
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                              grace_period=grace_s)
        except Exception as err:  # noqa: BLE001 - driver, URL and connection errors all mean "cannot open"
            if attempt < SCHEMA_RACE_ATTEMPTS and _lost_schema_race(err):
                time.sleep(0.2 * attempt)
                attempt += 1
                continue
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"--storage {url!r}: cannot be opened ({reason})") from None


def _open_journal(url: str, path: str):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    file = Path(path).expanduser()
    if not path or file.is_dir() or not file.parent.is_dir():
        why = "a file path is missing" if not path else ("is a directory" if file.is_dir() else
                                                          f"folder {str(file.parent)!r} does not exist")
        raise ValueError(f"--storage {url!r}: cannot be opened ({why})")
    try:
        return JournalStorage(JournalFileBackend(str(file.resolve())))
    except Exception as err:  # noqa: BLE001 - permissions, a file that is not a journal
        raise ValueError(f"--storage {url!r}: cannot be opened ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None


def _lost_schema_race(err: BaseException) -> bool:
    """Whether opening failed because another process was creating the same new database at that moment.

    Optuna creates the tables and stamps their version on first open, check-then-insert: two workers (or a worker
    and a reader) opening one new file together can both insert, and the slower one fails. Opening again finds
    the schema made and succeeds.
    """
    import sqlalchemy.exc

    # a lock held past SQLite's 60 s timeout is not this race: reopening would only wait again
    return isinstance(err, sqlalchemy.exc.IntegrityError) or (
        isinstance(err, sqlalchemy.exc.OperationalError) and "already exists" in str(err))


def state_counts(study) -> collections.Counter:
    """Trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``)."""
    return collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))


def fail_stale(study) -> None:
    """Mark trials whose worker stopped heartbeating as FAIL."""
    import optuna

    optuna.storages.fail_stale_trials(study)


def bind_study(study, key: str, value: Mapping[str, Any]) -> None:
    """Record ``value`` in the study on first use; later uses must match it, so a rerun continues only the search
    it started (same recipe and space), never mixes two."""
    stored = study.user_attrs.get(key)
    if stored is None:
        study.set_user_attr(key, dict(value))
        return
    where = first_difference(stored, dict(value))
    if where is not None:
        raise ValueError(f"study {study.study_name!r} was started with another {key} (differs at {where}); "
                         f"use another --study or output directory")


def first_difference(a: Any, b: Any, prefix: str = "") -> Union[str, None]:
    """The dotted path of the first difference between two JSON-like values, or None when they are equal.

    >>> first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}})
    'a.c'
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{prefix}{i}.")
            if found is not None:
                return found
        return None
    return None if a == b else (prefix.rstrip(".") or "(top)")


def trials_in(study, states: Iterable[str]):
    """The study's trials in the named states."""
    wanted = set(states)
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in wanted]
