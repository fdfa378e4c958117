"""``mc_predict``: ``T`` stochastic passes per batch in one of three modes, averaged into per-example uncertainty.

>>> from dropout_tune.testing import tiny_model, tiny_inputs
>>> model = tiny_model("bert")
>>> pred = mc_predict(model, tiny_inputs(model), samples=4, seed=0)
>>> pred.mean_probs.shape, pred.mutual_information.shape, pred.rates["attention"]
((2, 3), (2,), 0.1)
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from ..patching import SpecLike
from ..recipe import MC_MODES
from ..spec import DropoutSpec
from . import inputs as _in
from .results import ClassificationPrediction, MCPrediction, RegressionPrediction
from .stats import classification_stats, regression_stats
from .switch import StochasticSwitch, eval_mode, warn_if_inactive
from .trunk import Trunk

MODES = MC_MODES  # "loop", "replicate", "trunk": named in the config layer (recipe.py), which imports no engine

#: Default activation budget of one forward in replicate / trunk modes, per device type. On CPU, forwards of ~100-200
#: MiniLM rows ran fastest per row (larger ones fall out of cache); on a GPU, larger is better (fewer launches).
DEFAULT_BUDGET_MB = {"cpu": 256.0, "cuda": 4096.0, "other": 1024.0}


def rows_for_budget(model: nn.Module, inputs: Mapping, memory_budget_mb: float) -> int:
    """Rows per forward whose activations fit ``memory_budget_mb``, estimated from the config: per row and layer,
    ~``4H + 2I`` floats per token for hidden and feed-forward activations plus ``4 * heads * S`` for attention
    scores, softmax, dropout mask and dropped scores (inference frees earlier layers).

    >>> from dropout_tune.testing import tiny_model, tiny_inputs
    >>> m = tiny_model("bert"); rows_for_budget(m, tiny_inputs(m, seq_len=8), 1.0)
    99
    """
    config = _in.transformers_model(model).config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or 768
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or 12
    first = next(iter(inputs.values()))
    seq_len = first.shape[1] if first.dim() == 2 else 512
    element = next(model.parameters()).element_size()
    per_row = element * seq_len * (4 * hidden + 2 * intermediate + 4 * heads * seq_len)
    return max(1, int(memory_budget_mb * 2**20 // per_row))


def validate_options(samples: int, mode: str, stochastic_layers: Optional[int], max_batch: Optional[int]) -> None:
    """Raise a ValueError naming the first bad option of ``mc_predict``."""
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
                   trunk: Optional[Trunk], advance: Callable[[int], None]) -> torch.Tensor:
    """``(T, B, C)`` logits of ``T`` stochastic passes; ``max_rows`` rows per forward, examples split first when a
    single copy of the batch does not fit, then copies grouped ``max_rows // B`` per forward (copy-major).
    ``max_rows == B`` is the plain loop: one forward of the batch per sample, in sample order. ``advance(n)`` is
    called when ``n`` more passes over the whole batch are done."""
    batch = _in.rows(inputs)
    per_chunk = min(batch, max_rows)
    copies_per_forward = max(1, min(samples, max_rows // per_chunk))
    out: Optional[torch.Tensor] = None
    for start in range(0, batch, per_chunk):
        chunk = _in.slice_rows(inputs, start, start + per_chunk)
        rows = _in.rows(chunk)
        last_chunk = start + per_chunk >= batch
        for first in range(0, samples, copies_per_forward):
            copies = min(copies_per_forward, samples - first)
            if trunk is not None:
                trunk.current = _in.repeat(trunk.cache[start:start + rows], copies)
            logits = _logits(model, {k: _in.repeat(v, copies) for k, v in chunk.items()}, extra)
            if out is None:
                out = logits.new_empty((samples, batch, logits.shape[-1]))
            out[first:first + copies, start:start + rows] = logits.view(copies, rows, -1)
            if last_chunk:
                advance(copies)
    assert out is not None
    return out


def _task_of(model: nn.Module) -> str:
    config = _in.transformers_model(model).config
    problem = getattr(config, "problem_type", None)
    if problem == "multi_label_classification":
        raise ValueError("problem_type 'multi_label_classification' is not supported by mc_predict; supported: "
                         "single_label_classification, regression")
    if problem == "regression" or getattr(config, "num_labels", 2) == 1:
        return "regression"
    return "classification"


def _progress_bar(enabled: bool, loader: Any, samples: int):
    """A tqdm bar over the sampled passes (``samples`` per batch) on stderr; ``None`` when off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    try:
        total: Optional[int] = len(loader) * samples
    except TypeError:  # an iterable without a length
        total = None
    return tqdm(total=total, desc=f"MC dropout, T={samples}", unit="pass", disable=None, leave=False)


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
    progress: bool = False,
) -> MCPrediction:
    """MC-dropout predictions for every example of ``data``: a :class:`ClassificationPrediction`, or a
    :class:`RegressionPrediction` for a regression head.

    ``data`` is one batch dict, a DataLoader (or any iterable of batch dicts), or a tokenized ``datasets.Dataset``
    (padded by ``tokenizer`` when given, else with the model's pad id). Label columns ``labels``/``label`` are kept
    as ``labels``. Modes (details in ``docs/mc_dropout.md``):

    * ``loop``: per batch, ``samples`` forwards of the batch with dropout on;
    * ``replicate``: the batch repeated ``c`` times per forward (``c`` as large as ``max_batch`` rows allow,
      ``max_batch`` defaulting to what ``memory_budget_mb`` holds, by default ``DEFAULT_BUDGET_MB`` for the
      device), split into chunks when needed;
    * ``trunk``: the layers below the top ``stochastic_layers`` run once, deterministically; only the top layers and
      the head are sampled (replicated like ``replicate``).

    ``spec`` picks the stochastic roles and their rates (see ``mc_dropout``); the rates actually sampled are in the
    result's ``rates``. ``deterministic`` adds the eval-mode prediction (one extra pass; trunk mode needs that pass
    anyway). ``seed`` seeds torch's generator first (offset by the process index under ``accelerator``). With
    ``accelerator`` (an ``accelerate.Accelerator``) every process handles its shard and the results are gathered
    with ``gather_for_metrics``, so every example is counted once; every process returns the full result.
    ``progress`` shows a bar over the sampled passes on stderr (when it is a terminal).
    """
    validate_options(samples, mode, stochastic_layers, max_batch)
    base = accelerator.unwrap_model(model) if accelerator is not None else model
    device = accelerator.device if accelerator is not None else next(base.parameters()).device
    task = _task_of(base)
    trunk = Trunk(base, stochastic_layers) if mode == "trunk" else None  # type: ignore[arg-type]
    names = _in.input_names(base)
    use_cache = "use_cache" in inspect.signature(_in.transformers_model(base).forward).parameters
    extra = {"use_cache": False} if use_cache else {}
    if seed is not None:
        torch.manual_seed(seed + (accelerator.process_index if accelerator is not None else 0))
    stats_of = classification_stats if task == "classification" else regression_stats
    parts: list[dict[str, torch.Tensor]] = []
    loader = _in.batches(data, base, batch_size, tokenizer, accelerator)
    bar = _progress_bar(progress and (accelerator is None or accelerator.is_main_process), loader, samples)
    advance = bar.update if bar is not None else (lambda n: None)
    with eval_mode(base), torch.inference_mode():
        switch = StochasticSwitch(base, spec, exclude=trunk.is_below if trunk is not None else None)
        try:
            warn_if_inactive(switch, "mc_predict", stacklevel=2)
            for batch in loader:
                inputs, labels = _in.split_batch(batch, names, device)
                det_logits = None
                if deterministic or trunk is not None:
                    with trunk.capturing() if trunk is not None else contextlib.nullcontext():
                        det_logits = _logits(base, inputs, extra)
                if mode == "loop":
                    max_rows = _in.rows(inputs)
                else:
                    budget = memory_budget_mb or DEFAULT_BUDGET_MB.get(device.type, DEFAULT_BUDGET_MB["other"])
                    max_rows = max_batch or rows_for_budget(base, inputs, budget)
                switch.on()
                try:
                    with trunk.replaying() if trunk is not None else contextlib.nullcontext():
                        sampled = _sample_logits(base, inputs, extra, samples, max_rows, trunk, advance)
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
            if bar is not None:
                bar.close()
    if not parts:
        raise ValueError("data: no batches")
    arrays = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    result_type = ClassificationPrediction if task == "classification" else RegressionPrediction
    spec_text = repr(DropoutSpec.coerce(spec)) if spec is not None else None
    return result_type(mode=mode, samples=samples, stochastic_layers=stochastic_layers, spec=spec_text,
                       rates=switch.rates, **arrays)
