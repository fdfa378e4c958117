"""Files written safely: atomic writes (readers never see half a file), JSON, and output-directory checks that
fail before any work is done.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "x.json", {"a": float("nan")}); read_json(d / "x.json")
{'a': None}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` through a temporary file in the same folder and a rename, so concurrent readers never see
    a half-written file and an interrupted write leaves the old file (or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)  # mkstemp makes 0600; others may share the file read-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (JSON has no NaN / inf).

    >>> json_safe({"x": [1.0, float("inf")]})
    {'x': [1.0, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")


def read_json(path: PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def looks_like_path(text: str) -> bool:
    """Whether ``text`` is meant as a file path rather than a name: it holds a folder separator or a suffix.

    >>> looks_like_path("data/reviews.csv"), looks_like_path("reviews.jsonl"), looks_like_path("sst2")
    (True, True, False)
    """
    return "/" in text or os.sep in text or bool(Path(text).suffix)


def check_writable_dir(path: PathLike, what: str = "output directory", create: bool = True) -> Path:
    """Make sure ``path`` is (or can be created as) a writable directory, before any work is done; raise
    ``ValueError`` naming the path otherwise (the CLI prints it in one line, exit 2). ``create=False`` only
    checks, so that input refused later leaves no empty directory behind.

    >>> check_writable_dir("/dev/null/x")
    Traceback (most recent call last):
    ...
    ValueError: output directory /dev/null/x: not a directory (/dev/null is a file)
    """
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what} {path}: not a directory ({parent} is a file)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"{what} {path}: not writable ({parent} is read-only)")
            break
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot be created ({err.strerror})") from None
    return path


def check_writable_file(path: PathLike, what: str = "output file") -> Path:
    """Like :func:`check_writable_dir` for a file's folder; also refuses a path that is an existing directory."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a directory")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what=f"{what} {path}: folder")
    return path
