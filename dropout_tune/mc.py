"""Monte Carlo dropout (Gal & Ghahramani, 2016) over every dropout site of a transformers model.

``mc_dropout(model)`` makes dropout stochastic at inference in every form transformers keeps it (``nn.Dropout``
modules, ``.p`` read by attention code, float attributes such as ``LlamaAttention.attention_dropout``), while the rest
of the model behaves as in eval mode. ``mc_predict`` averages ``T`` stochastic passes and returns per-example
uncertainty. See ``docs/mc_dropout.md`` for what each mode computes.

Example:
    >>> import torch
    >>> from dropout_tune.testing import tiny_model, tiny_inputs
    >>> model = tiny_model("bert").eval()
    >>> inputs = tiny_inputs(model)
    >>> with mc_dropout(model) as sites, torch.no_grad():
    ...     a, b = model(**inputs).logits, model(**inputs).logits
    >>> bool((a != b).any()), len(sites), model.training
    (True, 8, False)
    >>> pred = mc_predict(model, inputs, samples=4, seed=0)
    >>> pred.mean_probs.shape, pred.mutual_information.shape
    ((2, 3), (2,))
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
import torch
from torch import nn

from .patching import DropoutSite, SpecLike, apply_dropout, inspect_dropout, inspect_stochastic_depth, restore_dropout
from .spec import DropoutSpec

MODES = ("loop", "replicate", "trunk")
LABEL_KEYS = ("labels", "label")

#: model_type -> path of the ``nn.ModuleList`` of layers inside ``model.base_model``, for ``mode="trunk"``.
TRUNK_LAYERS: dict[str, str] = {
    "bert": "encoder.layer",
    "roberta": "encoder.layer",
    "xlm-roberta": "encoder.layer",
    "electra": "encoder.layer",
    "deberta-v2": "encoder.layer",
    "distilbert": "transformer.layer",
    "modernbert": "layers",
    "vit": "layers",
    "gpt2": "h",
    "gpt_neox": "layers",
    "llama": "layers",
    "mistral": "layers",
    "qwen2": "layers",
    "gemma": "layers",
    "phi": "layers",
}

#: Default activation budget of one forward in replicate / trunk modes, per device type. On CPU, forwards of ~100-200
#: MiniLM rows ran fastest per row (larger ones fall out of cache); on a GPU, larger is better (fewer launches).
DEFAULT_BUDGET_MB = {"cpu": 256.0, "cuda": 4096.0, "other": 1024.0}

_MISSING = object()


# ---- tracing: how many dropout applications really happen ---------------------------------------------------------


@dataclass
class DropoutTrace:
    """Counts of dropout applications seen by :func:`trace_dropout`."""

    functional: int = 0  # torch.nn.functional.dropout calls with training=True and p > 0
    sdpa: int = 0  # scaled_dot_product_attention calls with dropout_p > 0
    shapes: list = field(default_factory=list)  # input shape of each functional call, in call order

    @property
    def total(self) -> int:
        return self.functional + self.sdpa


@contextlib.contextmanager
def trace_dropout(on_apply: Optional[Callable[[], None]] = None) -> Iterator[DropoutTrace]:
    """Count dropout applications (``F.dropout`` that drops, SDPA with ``dropout_p > 0``) inside the block;
    ``on_apply`` is called at each one (e.g. to attribute it to the module running).

    >>> with trace_dropout() as trace:
    ...     _ = torch.nn.functional.dropout(torch.ones(3), p=0.5, training=True)
    ...     _ = torch.nn.functional.dropout(torch.ones(3), p=0.5, training=False)
    >>> trace.total
    1
    """
    F = torch.nn.functional
    trace = DropoutTrace()
    original_dropout, original_sdpa = F.dropout, F.scaled_dot_product_attention

    def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002 - torch's own parameter name
        if training and p > 0:
            trace.functional += 1
            trace.shapes.append(tuple(input.shape))
            if on_apply is not None:
                on_apply()
        return original_dropout(input, p, training, inplace)

    def sdpa(*args, **kwargs):
        dropout_p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        if dropout_p > 0:
            trace.sdpa += 1
            if on_apply is not None:
                on_apply()
        return original_sdpa(*args, **kwargs)

    F.dropout, F.scaled_dot_product_attention = dropout, sdpa
    try:
        yield trace
    finally:
        F.dropout, F.scaled_dot_product_attention = original_dropout, original_sdpa


# ---- switching dropout on, and only dropout --------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside the block; every module's own train flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


class _StochasticSwitch:
    """The exact set of flags that turns the chosen dropout sites of an eval-mode model stochastic.

    ``on()`` sets ``training=True`` on each dropout module (``module``/``module_p``/``injected``), on each owner whose
    forward gates a site (``module_p``/``attribute``) -- on that module alone, never recursively -- and neutralises
    what ``training=True`` would also switch on in those owners (layerdrop / drop-path rates, gradient checkpointing).
    ``off()`` puts back what ``on()`` changed; ``close()`` also undoes the rates ``spec`` set.
    """

    def __init__(self, model: nn.Module, spec: SpecLike = None,
                 exclude: Optional[Callable[[DropoutSite, nn.Module], bool]] = None) -> None:
        spec = DropoutSpec.coerce(spec)
        self.model = model
        self.report = apply_dropout(model, spec, warn_missing=False, write_config=False) if spec else None
        self._saved: Optional[tuple[list, list]] = None
        try:
            self._resolve(spec, exclude)
        except BaseException:
            self.close()
            raise

    def _resolve(self, spec: DropoutSpec, exclude: Optional[Callable[[DropoutSite, nn.Module], bool]]) -> None:
        model = self.model
        chosen_roles = {role for role, _ in spec.items()} if spec else None
        modules = dict(model.named_modules())
        self.sites: list[DropoutSite] = []
        targets: dict[int, nn.Module] = {}
        owners: dict[int, nn.Module] = {}
        seen: set[str] = set()
        for site in inspect_dropout(model):
            owner = modules[site.owner]
            if site.name in seen:  # a site reported twice (e.g. under two roles) is switched once
                continue
            seen.add(site.name)
            if (site.kind == "placeholder" or site.p <= 0
                    or (chosen_roles is not None and site.role not in chosen_roles)
                    or (exclude is not None and exclude(site, owner))):
                continue
            self.sites.append(site)
            if site.kind in ("module", "module_p", "injected"):
                module = owner._modules[site.attr]
                targets[id(module)] = module
            if site.kind in ("module_p", "attribute"):
                targets[id(owner)] = owner
                owners[id(owner)] = owner
        self._targets = list(targets.values())
        self._knobs: list[tuple[Any, str, Any]] = [
            (owner, "gradient_checkpointing", False) for owner in owners.values()
            if getattr(owner, "gradient_checkpointing", False) is True]
        for depth_site in inspect_stochastic_depth(model):
            if depth_site.kind == "attribute" and depth_site.p > 0:
                self._knobs.append((modules[depth_site.owner], depth_site.attr, 0.0))

    def on(self) -> None:
        if self._saved is not None:
            return
        self._saved = ([(m, m.training) for m in self._targets],
                       [(obj, attr, getattr(obj, attr)) for obj, attr, _ in self._knobs])
        for obj, attr, value in self._knobs:
            setattr(obj, attr, value)
        for module in self._targets:
            module.training = True

    def off(self) -> None:
        if self._saved is None:
            return
        flags, knobs = self._saved
        for module, flag in flags:
            module.training = flag
        for obj, attr, value in knobs:
            setattr(obj, attr, value)
        self._saved = None

    def close(self) -> None:
        self.off()
        if self.report is not None:
            restore_dropout(self.model, self.report)
            self.report = None


@contextlib.contextmanager
def mc_dropout(model: nn.Module, spec: SpecLike = None) -> Iterator[list[DropoutSite]]:
    """Every dropout site of ``model`` stochastic, everything else as in eval mode; yields the active sites.

    With ``spec`` (``DropoutSpec``, dict, ``"attention=0.1"`` or a float) only the roles it names are stochastic, at
    its rates (placeholders built with p=0 become real dropout when given p > 0). No batch-norm update, layerdrop,
    drop-path or gradient checkpointing happens inside. On exit (also on error) every train flag, rate and module
    is exactly as before.

    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("llama")              # built with attention_dropout = 0
    >>> with mc_dropout(model, "attention=0.1") as sites:
    ...     [(s.role, s.p) for s in sites]
    [('attention', 0.1), ('attention', 0.1)]
    >>> model.model.layers[0].self_attn.attention_dropout, model.training
    (0.0, True)
    """
    with _eval_mode(model):
        switch = _StochasticSwitch(model, spec)
        try:
            if not switch.sites:
                warnings.warn(f"mc_dropout: no dropout site with p > 0 is active in {type(model).__name__}, so every "
                              f"sample equals the deterministic prediction; give rates, e.g. spec='attention=0.1'",
                              stacklevel=3)
            switch.on()
            yield switch.sites
        finally:
            switch.close()


# ---- trunk: run the bottom of the network once, sample only the top -------------------------------------------------


def _hf_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a ``PeftModel`` (or the model itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _get_path(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def _hidden_argument(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise ValueError("trunk mode: cannot find the hidden states a layer receives (neither its first positional "
                     "argument nor `hidden_states=`)")


class _Trunk:
    """Runs layers ``[0, L-k)`` and everything before them once per batch, and the top ``k`` layers plus the head
    ``T`` times.

    In the deterministic pass (``capturing``) a forward pre-hook on layer ``L-k`` stores the hidden states it
    receives. In the sampled passes (``replaying``) the bottom layers are replaced by pass-through stubs and the same
    pre-hook substitutes the stored hidden states (repeated to the rows of the forward), so the model's own code
    runs the top layers, final norm, pooler and classifier; the embeddings still run (deterministically, in eval
    mode) but their output is discarded.
    """

    def __init__(self, model: nn.Module, stochastic_layers: int) -> None:
        hf = _hf_model(model)
        model_type = getattr(getattr(hf, "config", None), "model_type", None)
        path = TRUNK_LAYERS.get(model_type)  # type: ignore[arg-type]
        layers = _get_path(getattr(hf, "base_model", hf), path) if path else None
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"mode='trunk' does not cover model type {model_type!r}; covered: "
                             f"{', '.join(TRUNK_LAYERS)} (use mode='loop' or 'replicate')")
        n_layers = len(layers)
        if isinstance(stochastic_layers, bool) or not isinstance(stochastic_layers, int) or not (
                1 <= stochastic_layers <= n_layers):
            raise ValueError(f"stochastic_layers: expected an integer in [1, {n_layers}] for this {n_layers}-layer "
                             f"model, got {stochastic_layers!r}")
        self.n_layers = n_layers
        self.cut = n_layers - stochastic_layers
        self.top = layers[self.cut]
        self.bottom = list(layers[: self.cut])
        self._bottom_ids = frozenset(id(m) for layer in self.bottom for m in layer.modules())
        self._top_ids = frozenset(id(m) for layer in layers[self.cut:] for m in layer.modules())
        self.cache: Optional[torch.Tensor] = None  # hidden states entering layer `cut`, one row per example
        self.current: Optional[torch.Tensor] = None  # the rows of the forward being replayed
        self._returns_tuple: dict[int, int] = {}  # bottom layer index -> tuple length of its output (0: tensor)

    def is_below(self, site: DropoutSite, owner: nn.Module) -> bool:
        """Is ``site`` part of the deterministic trunk: inside a bottom layer, or an embedding-role site outside the
        top layers (the embeddings; DeBERTa's ``pos_dropout`` inside a top layer is sampled)."""
        if id(owner) in self._bottom_ids:
            return True
        return site.role == "embedding" and id(owner) not in self._top_ids

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        def store(module, args, kwargs):
            self.cache = _hidden_argument(args, kwargs)

        def record(index):
            def hook(module, args, output):
                if isinstance(output, torch.Tensor):
                    self._returns_tuple[index] = 0
                elif isinstance(output, tuple) and not hasattr(output, "keys"):
                    self._returns_tuple[index] = len(output)
                else:
                    raise ValueError(f"trunk mode: layer {index} returns {type(output).__name__}; expected a tensor "
                                     f"or a tuple")
            return hook

        handles = [self.top.register_forward_pre_hook(store, with_kwargs=True)]
        handles += [layer.register_forward_hook(record(i)) for i, layer in enumerate(self.bottom)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        def substitute(module, args, kwargs):
            if args:
                return (self.current,) + tuple(args[1:]), kwargs
            return args, {**kwargs, "hidden_states": self.current}

        saved = []
        for index, layer in enumerate(self.bottom):
            saved.append(layer.__dict__.get("forward", _MISSING))
            layer.forward = _pass_through(self._returns_tuple[index])  # instance attribute shadows the method
        handle = self.top.register_forward_pre_hook(substitute, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            for layer, old in zip(self.bottom, saved):
                if old is _MISSING:
                    del layer.forward
                else:
                    layer.forward = old


def _pass_through(tuple_length: int):
    def forward(*args, **kwargs):
        hidden = _hidden_argument(args, kwargs)
        return hidden if tuple_length == 0 else (hidden,) + (None,) * (tuple_length - 1)
    return forward


# ---- batches ------------------------------------------------------------------------------------------------------


def _input_names(model: nn.Module) -> set[str]:
    """Explicit parameters of the transformers model's ``forward`` that take inputs (labels excluded)."""
    hf = _hf_model(model)
    parameters = inspect.signature(hf.forward).parameters
    return {name for name, p in parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            and name not in LABEL_KEYS + ("return_dict", "output_attentions", "output_hidden_states", "use_cache")}


def _pad_collate(pad_token_id: int):
    """Collate dataset rows (lists of token ids of different lengths) into right-padded tensors."""
    def collate(rows: list[dict]) -> dict:
        batch = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            if isinstance(values[0], (list, tuple, torch.Tensor)):
                lengths = [len(v) for v in values]
                width = max(lengths)
                pad = pad_token_id if key == "input_ids" else 0
                values = [list(v) + [pad] * (width - len(v)) for v in values]
                if key == "input_ids" and "attention_mask" not in rows[0]:  # mask what was padded
                    batch["attention_mask"] = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
            batch[key] = torch.as_tensor(np.asarray(values))
        return batch
    return collate


def _batches(data: Any, model: nn.Module, batch_size: int, tokenizer: Any, accelerator: Any) -> Iterable[Mapping]:
    if isinstance(data, Mapping):
        if accelerator is not None and accelerator.num_processes > 1:
            raise ValueError("data: with several processes pass a DataLoader or a datasets.Dataset, not one batch "
                             "dict (every process would see the same examples)")
        return [data]
    loader = data
    if hasattr(data, "column_names") and hasattr(data, "select_columns"):  # a datasets.Dataset
        names = _input_names(model)
        columns = [c for c in data.column_names if c in names or c in LABEL_KEYS]
        if not any(c in names for c in columns):
            raise ValueError(f"data: the dataset has no model input column (columns: {', '.join(data.column_names)};"
                             f" expected some of {', '.join(sorted(names))}); tokenize it first")
        if tokenizer is not None:
            from transformers import DataCollatorWithPadding

            collate = DataCollatorWithPadding(tokenizer)
        else:
            collate = _pad_collate(getattr(_hf_model(model).config, "pad_token_id", None) or 0)
        loader = torch.utils.data.DataLoader(data.select_columns(columns), batch_size=batch_size,
                                             collate_fn=collate, shuffle=False)
    if accelerator is not None and isinstance(loader, torch.utils.data.DataLoader) and not hasattr(
            loader, "gradient_state"):  # accelerate's prepared loaders carry a gradient_state
        loader = accelerator.prepare_data_loader(loader)
    return loader


def _split_batch(batch: Mapping, names: set[str], device: torch.device) -> tuple[dict, Optional[torch.Tensor]]:
    inputs = {k: v.to(device) for k, v in batch.items() if k in names and isinstance(v, torch.Tensor)}
    if not inputs:
        raise ValueError(f"data: a batch has none of the model's inputs (keys: {', '.join(batch)}; expected some of "
                         f"{', '.join(sorted(names))})")
    labels = next((batch[k] for k in LABEL_KEYS if isinstance(batch.get(k), torch.Tensor)), None)
    return inputs, (labels.to(device) if labels is not None else None)


def _rows(inputs: Mapping) -> int:
    return next(iter(inputs.values())).shape[0]


def _slice(inputs: Mapping, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in inputs.items()}


def _repeat(x: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` copies of the batch, copy-major: rows ``[c*B, (c+1)*B)`` are copy ``c``."""
    return x if copies == 1 else x.repeat(copies, *([1] * (x.dim() - 1)))


def rows_for_budget(model: nn.Module, inputs: Mapping, memory_budget_mb: float) -> int:
    """Rows per forward whose activations fit ``memory_budget_mb``, estimated from the config: per row and layer,
    ~``4H + 2I`` floats per token for hidden and feed-forward activations plus ``4 * heads * S`` for attention
    scores, softmax, dropout mask and dropped scores (inference frees earlier layers).

    >>> from dropout_tune.testing import tiny_model, tiny_inputs
    >>> m = tiny_model("bert"); rows_for_budget(m, tiny_inputs(m, seq_len=8), 1.0)
    99
    """
    config = _hf_model(model).config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or 768
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or 12
    first = next(iter(inputs.values()))
    seq_len = first.shape[1] if first.dim() == 2 else 512
    element = next(model.parameters()).element_size()
    per_row = element * seq_len * (4 * hidden + 2 * intermediate + 4 * heads * seq_len)
    return max(1, int(memory_budget_mb * 2**20 // per_row))


# ---- sampling and statistics ----------------------------------------------------------------------------------------


def _logits(model: nn.Module, inputs: Mapping, extra: Mapping) -> torch.Tensor:
    output = model(**inputs, **extra)
    logits = getattr(output, "logits", None)
    if logits is None:
        raise ValueError(f"{type(model).__name__} returns no `logits`; mc_predict needs a model with a task head "
                         f"(e.g. AutoModelForSequenceClassification)")
    if logits.dim() != 2:
        raise ValueError(f"mc_predict handles one prediction per example (logits of shape (batch, classes)); got "
                         f"logits of shape {tuple(logits.shape)}")
    return logits


def _sample_logits(model: nn.Module, inputs: Mapping, extra: Mapping, samples: int, max_rows: int,
                   trunk: Optional[_Trunk]) -> torch.Tensor:
    """``(T, B, C)`` logits of ``T`` stochastic passes; ``max_rows`` rows per forward, examples split first when a
    single copy of the batch does not fit, then copies grouped ``max_rows // B`` per forward (copy-major).
    ``max_rows == B`` is the plain loop: one forward of the batch per sample, in sample order."""
    batch = _rows(inputs)
    per_chunk = min(batch, max_rows)
    copies_per_forward = max(1, min(samples, max_rows // per_chunk))
    out: Optional[torch.Tensor] = None
    for start in range(0, batch, per_chunk):
        chunk = _slice(inputs, start, start + per_chunk)
        rows = _rows(chunk)
        for first in range(0, samples, copies_per_forward):
            copies = min(copies_per_forward, samples - first)
            if trunk is not None:
                trunk.current = _repeat(trunk.cache[start:start + rows], copies)
            logits = _logits(model, {k: _repeat(v, copies) for k, v in chunk.items()}, extra)
            if out is None:
                out = logits.new_empty((samples, batch, logits.shape[-1]))
            out[first:first + copies, start:start + rows] = logits.view(copies, rows, -1)
    assert out is not None
    return out


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(probs, probs).sum(-1)


def _classification_stats(sampled: torch.Tensor, deterministic: Optional[torch.Tensor],
                          keep_samples: bool) -> dict[str, torch.Tensor]:
    probs = sampled.double().softmax(-1)  # (T, B, C); float64 so that PE = EE + MI holds to ~1e-15
    mean = probs.mean(0)
    predictive = _entropy(mean)
    expected = _entropy(probs).mean(0)
    votes = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).sum(0)  # (B, C) counts over T
    stats = {
        "mean_probs": mean,
        "std": probs.std(0, unbiased=False),
        "predictive_entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": predictive - expected,
        "variation_ratio": 1.0 - votes.max(-1).values.double() / probs.shape[0],
        "prediction": mean.argmax(-1),
    }
    if deterministic is not None:
        det = deterministic.double().softmax(-1)
        stats["deterministic_probs"] = det
        stats["deterministic_prediction"] = det.argmax(-1)
    if keep_samples:
        stats["sample_outputs"] = probs.transpose(0, 1)
    return stats


def _regression_stats(sampled: torch.Tensor, deterministic: Optional[torch.Tensor],
                      keep_samples: bool) -> dict[str, torch.Tensor]:
    values = sampled.double().squeeze(-1)  # (T, B) for one target, (T, B, D) for several
    variance = values.var(0, unbiased=False)
    stats = {"mean": values.mean(0), "variance": variance, "std": variance.sqrt()}
    if deterministic is not None:
        stats["deterministic_mean"] = deterministic.double().squeeze(-1)
    if keep_samples:
        stats["sample_outputs"] = values.transpose(0, 1)
    return stats


def _task_of(model: nn.Module) -> str:
    config = _hf_model(model).config
    problem = getattr(config, "problem_type", None)
    if problem == "multi_label_classification":
        raise ValueError("problem_type 'multi_label_classification' is not supported by mc_predict; supported: "
                         "single_label_classification, regression")
    if problem == "regression" or getattr(config, "num_labels", 2) == 1:
        return "regression"
    return "classification"


# ---- the result ----------------------------------------------------------------------------------------------------


@dataclass
class MCPrediction:
    """Per-example MC-dropout predictions (numpy arrays, one row per example, in data order).

    Classification fills ``mean_probs`` (N, C), ``std`` (N, C, population std of each class probability over the T
    samples), ``predictive_entropy`` H[E_t p_t], ``expected_entropy`` E_t H[p_t], ``mutual_information`` (their
    difference: BALD), ``variation_ratio`` (1 - share of samples voting for the modal class), ``prediction`` and the
    eval-mode ``deterministic_probs`` / ``deterministic_prediction``. Regression fills ``mean``, ``variance``, ``std``
    and ``deterministic_mean``. Entropies are in nats.
    """

    task: str
    mode: str
    samples: int
    stochastic_layers: Optional[int] = None
    spec: Optional[str] = None
    labels: Optional[np.ndarray] = None
    mean_probs: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None
    predictive_entropy: Optional[np.ndarray] = None
    expected_entropy: Optional[np.ndarray] = None
    mutual_information: Optional[np.ndarray] = None
    variation_ratio: Optional[np.ndarray] = None
    prediction: Optional[np.ndarray] = None
    deterministic_probs: Optional[np.ndarray] = None
    deterministic_prediction: Optional[np.ndarray] = None
    mean: Optional[np.ndarray] = None
    variance: Optional[np.ndarray] = None
    deterministic_mean: Optional[np.ndarray] = None
    sample_outputs: Optional[np.ndarray] = None  # (N, T, C) probabilities or (N, T) values, with keep_samples

    def __len__(self) -> int:
        first = self.mean_probs if self.task == "classification" else self.mean
        return 0 if first is None else len(first)

    def scores(self, name: str = "mutual_information") -> np.ndarray:
        """An uncertainty score per example (higher = more uncertain), e.g. for OOD detection."""
        valid = ("mutual_information", "predictive_entropy", "expected_entropy", "variation_ratio", "variance")
        value = getattr(self, name, None) if name in valid else None
        if value is None:
            raise ValueError(f"score {name!r} is not available for {self.task}; valid: "
                             f"{', '.join(v for v in valid if getattr(self, v) is not None)}")
        return value

    def to_dict(self, n_bins: int = 15) -> dict:
        """A JSON-ready summary: means of the uncertainty scores, and with labels the metrics of the MC mean and of
        the deterministic prediction side by side."""
        from .calibration import calibration_metrics

        out: dict[str, Any] = {"problem": self.task, "mode": self.mode, "samples": self.samples,
                               "stochastic_layers": self.stochastic_layers, "spec": self.spec, "n": len(self)}
        if self.task == "classification":
            for name in ("predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio"):
                out[f"mean_{name}"] = float(getattr(self, name).mean())
            if self.deterministic_prediction is not None:
                out["agreement_with_deterministic"] = float((self.prediction == self.deterministic_prediction).mean())
            if self.labels is not None:
                out["mc"] = calibration_metrics(self.mean_probs, self.labels, n_bins)
                if self.deterministic_probs is not None:
                    out["deterministic"] = calibration_metrics(self.deterministic_probs, self.labels, n_bins)
        else:
            out["mean_variance"] = float(self.variance.mean())
            if self.labels is not None:
                target = self.labels.astype(np.float64).reshape(self.mean.shape)
                out["mc"] = {"mse": float(((self.mean - target) ** 2).mean())}
                if self.deterministic_mean is not None:
                    out["deterministic"] = {"mse": float(((self.deterministic_mean - target) ** 2).mean())}
        return out


# ---- mc_predict ----------------------------------------------------------------------------------------------------


def _validate(samples: int, mode: str, stochastic_layers: Optional[int], max_batch: Optional[int]) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples: expected a positive integer, got {samples!r}")
    if mode not in MODES:
        raise ValueError(f"mode: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "trunk" and stochastic_layers is None:
        raise ValueError("stochastic_layers: mode='trunk' needs stochastic_layers=k (the number of top layers to "
                         "sample)")
    if mode != "trunk" and stochastic_layers is not None:
        raise ValueError(f"stochastic_layers: only used with mode='trunk', got mode={mode!r}")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"max_batch: expected a positive integer, got {max_batch!r}")


def mc_predict(
    model: nn.Module,
    data: Any,
    samples: int = 20,
    *,
    mode: str = "loop",
    stochastic_layers: Optional[int] = None,
    spec: SpecLike = None,
    max_batch: Optional[int] = None,
    memory_budget_mb: Optional[float] = None,
    batch_size: int = 32,
    tokenizer: Any = None,
    accelerator: Any = None,
    deterministic: bool = True,
    keep_samples: bool = False,
    seed: Optional[int] = None,
) -> MCPrediction:
    """MC-dropout predictions for every example of ``data``.

    ``data`` is one batch dict, a DataLoader (or any iterable of batch dicts), or a tokenized ``datasets.Dataset``
    (padded by ``tokenizer`` when given, else with the model's pad id). Label columns ``labels``/``label`` are kept
    as ``MCPrediction.labels``. Modes (details in ``docs/mc_dropout.md``):

    * ``loop``: per batch, ``samples`` forwards of the batch with dropout on;
    * ``replicate``: the batch repeated ``c`` times per forward (``c`` as large as ``max_batch`` rows allow,
      ``max_batch`` defaulting to what ``memory_budget_mb`` holds, by default :data:`DEFAULT_BUDGET_MB` for the
      device), split into chunks when needed;
    * ``trunk``: the layers below the top ``stochastic_layers`` run once, deterministically; only the top layers and
      the head are sampled (replicated like ``replicate``).

    ``spec`` picks the stochastic roles and their rates (see :func:`mc_dropout`); ``deterministic`` adds the
    eval-mode prediction (one extra pass; trunk mode needs that pass anyway). ``seed`` seeds torch's generator
    first (offset by the process index under ``accelerator``). With ``accelerator`` (an ``accelerate.Accelerator``)
    every process handles its shard and the results are gathered with ``gather_for_metrics``, so every example is
    counted once; every process returns the full result.
    """
    _validate(samples, mode, stochastic_layers, max_batch)
    base = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else next(base.parameters()).device
    task = _task_of(base)
    trunk = _Trunk(base, stochastic_layers) if mode == "trunk" else None  # type: ignore[arg-type]
    names = _input_names(base)
    extra = {"use_cache": False} if "use_cache" in inspect.signature(_hf_model(base).forward).parameters else {}
    if seed is not None:
        torch.manual_seed(seed + (accelerator.process_index if accelerator is not None else 0))
    stats_of = _classification_stats if task == "classification" else _regression_stats
    parts: list[dict[str, torch.Tensor]] = []
    with _eval_mode(base), torch.inference_mode():
        switch = _StochasticSwitch(base, spec, exclude=trunk.is_below if trunk is not None else None)
        try:
            if not switch.sites:
                warnings.warn("mc_predict: no dropout site with p > 0 is active, so every sample equals the "
                              "deterministic prediction; give rates with spec=...", stacklevel=2)
            for batch in _batches(data, base, batch_size, tokenizer, accelerator):
                inputs, labels = _split_batch(batch, names, device)
                rows = _rows(inputs)
                det_logits = None
                if deterministic or trunk is not None:
                    with trunk.capturing() if trunk is not None else contextlib.nullcontext():
                        det_logits = _logits(base, inputs, extra)
                if mode == "loop":
                    max_rows = rows
                else:
                    budget = memory_budget_mb or DEFAULT_BUDGET_MB.get(device.type, DEFAULT_BUDGET_MB["other"])
                    max_rows = max_batch or rows_for_budget(base, inputs, budget)
                switch.on()
                try:
                    with trunk.replaying() if trunk is not None else contextlib.nullcontext():
                        sampled = _sample_logits(base, inputs, extra, samples, max_rows, trunk)
                finally:
                    switch.off()
                stats = stats_of(sampled, det_logits if deterministic else None, keep_samples)
                if labels is not None:
                    stats["labels"] = labels
                if accelerator is not None:
                    stats = accelerator.gather_for_metrics(stats)
                parts.append({k: v.cpu() for k, v in stats.items()})
        finally:
            switch.close()
    if not parts:
        raise ValueError("data: no batches")
    arrays = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    spec_text = repr(DropoutSpec.coerce(spec)) if spec is not None else None
    return MCPrediction(task=task, mode=mode, samples=samples, stochastic_layers=stochastic_layers, spec=spec_text,
                        **arrays)
