"""The fixtures of tests and benchmarks: tiny random-init models for every registry family, a toy text task, and
a tracer that counts the dropout applications that really happen (``trace_dropout``).

Example:
    >>> model = tiny_model("bert")            # doctest: +SKIP
    >>> sum(p.numel() for p in model.parameters()) < 200_000  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

_COMMON = dict(vocab_size=99, max_position_embeddings=64)
_ENCODER = dict(_COMMON, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
_DECODER = dict(_ENCODER, num_key_value_heads=2, pad_token_id=0)

#: model_type -> kwargs of a tiny config (2 layers, hidden size 32).
TINY_CONFIG_KWARGS: dict[str, dict[str, Any]] = {
    "bert": _ENCODER,
    "roberta": dict(_ENCODER, pad_token_id=1),
    "xlm-roberta": dict(_ENCODER, pad_token_id=1),
    "electra": dict(_ENCODER, embedding_size=16),
    "distilbert": dict(_COMMON, dim=32, n_layers=2, n_heads=4, hidden_dim=37),
    "albert": dict(_ENCODER, embedding_size=16, num_hidden_groups=1),
    "deberta-v2": dict(_ENCODER, relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=16,
                       position_buckets=8, type_vocab_size=0),
    "modernbert": dict(_COMMON, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       pad_token_id=0, global_attn_every_n_layers=2, local_attention=16),
    "gpt2": dict(vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=4, pad_token_id=0),
    "gpt_neox": dict(_ENCODER, pad_token_id=0),
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": dict(_DECODER, head_dim=8),
    "gemma": dict(_DECODER, head_dim=8),
    "qwen3": dict(_DECODER, head_dim=8),
    "gemma2": dict(_DECODER, head_dim=8, sliding_window=16),
    "phi3": dict(_DECODER, bos_token_id=1, eos_token_id=2),
    "phi": dict(_DECODER, pad_token_id=0),
    "t5": dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, pad_token_id=0,
               decoder_start_token_id=0, relative_attention_num_buckets=8),
    "bart": dict(vocab_size=99, max_position_embeddings=64, d_model=32, encoder_layers=2, decoder_layers=2,
                 encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
                 pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2),
    "vit": dict(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=37),
    "whisper": dict(vocab_size=99, num_mel_bins=8, d_model=32, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
                    max_source_positions=16, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2, decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None),
}

FAMILIES = tuple(TINY_CONFIG_KWARGS)


def tiny_config(model_type: str, **overrides: Any):
    """A tiny config of ``model_type``; ``overrides`` win (e.g. dropout rates).

    Example:
        >>> tiny_config("bert", hidden_dropout_prob=0.3).hidden_dropout_prob
        0.3
    """
    from transformers import AutoConfig

    kwargs = dict(TINY_CONFIG_KWARGS[model_type], **overrides)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_model(model_type: str, attn_implementation: str = "eager", seed: int = 0, **overrides: Any):
    """A tiny random-init model of ``model_type`` with a task head (sequence classification where the family
    has one, else its base model), seeded so two calls give the same weights.

    Example:
        >>> type(tiny_model("bert")).__name__  # doctest: +SKIP
        'BertForSequenceClassification'
    """
    import torch
    from transformers import AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

    # Families without a text-classification head get their natural one (ViT) or the base model (Whisper).
    _HEAD_AUTO_CLASS = {"vit": AutoModelForImageClassification, "whisper": AutoModel}

    num_labels = overrides.pop("num_labels", 3)
    config = tiny_config(model_type, **overrides)
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    config.num_labels = num_labels
    auto = _HEAD_AUTO_CLASS.get(model_type, AutoModelForSequenceClassification)
    return auto.from_config(config, attn_implementation=attn_implementation)


def tiny_inputs(model, batch_size: int = 2, seq_len: int = 8, seed: int = 0) -> dict:
    """Deterministic inputs for ``model`` (token ids, pixels or mel features, plus decoder ids where needed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    mt = cfg.model_type
    if mt == "vit":
        return {"pixel_values": torch.randn(batch_size, 3, 16, 16, generator=g)}
    ids = torch.randint(3, cfg.vocab_size, (batch_size, seq_len), generator=g)
    if mt == "whisper":
        feats = torch.randn(batch_size, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g)
        return {"input_features": feats, "decoder_input_ids": ids}
    if cfg.is_encoder_decoder:  # their classification heads pool at the final <eos>
        ids[:, -1] = cfg.eos_token_id
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


_POSITIVE = ("good", "great", "fine", "lovely", "superb", "fun")
_NEGATIVE = ("bad", "awful", "dull", "boring", "weak", "poor")


def write_toy_text_task(directory, sizes=(64, 24, 21), seed: int = 0):
    """Write ``train.csv`` / ``validation.csv`` / ``test.csv`` of a toy sentiment task (``text``, ``label``).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_toy_text_task(d, sizes=(4, 2, 2))
        >>> (d / "train.csv").read_text().splitlines()[0]
        'text,label'
    """
    import random
    from pathlib import Path

    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "validation", "test"), sizes):
        rows = ["text,label"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = rng.choices(_POSITIVE if label else _NEGATIVE, k=rng.randint(2, 6))
            rows.append(f"the movie was {' '.join(words)},{label}")
        (directory / f"{split}.csv").write_text("\n".join(rows) + "\n")


def save_tiny_text_model(directory, model_type: str = "bert", **overrides: Any):
    """Save a tiny random-init ``model_type`` with the embedded MiniLM tokenizer, loadable by ``load_model``."""
    from transformers import AutoTokenizer

    from .loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    overrides.setdefault("vocab_size", tokenizer.vocab_size)
    overrides.setdefault("max_position_embeddings", 128)
    model = tiny_model(model_type, num_labels=2, **overrides)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ---- tracing: how many dropout applications really happen ---------------------------------------------------------


@dataclass
class DropoutTrace:
    """Counts of dropout applications seen by :func:`trace_dropout`."""

    functional: int = 0  # torch.nn.functional.dropout calls with training=True and p > 0
    sdpa: int = 0  # scaled_dot_product_attention calls with dropout_p > 0
    shapes: list = field(default_factory=list)  # input shape of each functional call, in call order
    rates: list = field(default_factory=list)  # the rate of each application (both kinds), in call order

    @property
    def total(self) -> int:
        return self.functional + self.sdpa


@contextlib.contextmanager
def trace_dropout(on_apply: Optional[Callable[[], None]] = None) -> Iterator[DropoutTrace]:
    """Count dropout applications (F.dropout that drops, SDPA with dropout_p > 0) inside the block; ``on_apply``
    is called at each one, after its rate is appended to ``trace.rates`` (e.g. to attribute it to the module
    running).

    >>> import torch
    >>> with trace_dropout() as trace:
    ...     _ = torch.nn.functional.dropout(torch.ones(3), p=0.5, training=True)
    ...     _ = torch.nn.functional.dropout(torch.ones(3), p=0.5, training=False)
    >>> trace.total
    1
    """
    import torch

    F = torch.nn.functional
    trace = DropoutTrace()
    original_dropout, original_sdpa = F.dropout, F.scaled_dot_product_attention

    def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002 - torch's own parameter name
        if training and p > 0:
            trace.functional += 1
            trace.shapes.append(tuple(input.shape))
            trace.rates.append(float(p))
            if on_apply is not None:
                on_apply()
        return original_dropout(input, p, training, inplace)

    def sdpa(*args, **kwargs):
        dropout_p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        if dropout_p > 0:
            trace.sdpa += 1
            trace.rates.append(float(dropout_p))
            if on_apply is not None:
                on_apply()
        return original_sdpa(*args, **kwargs)

    F.dropout, F.scaled_dot_product_attention = dropout, sdpa
    try:
        yield trace
    finally:
        F.dropout, F.scaled_dot_product_attention = original_dropout, original_sdpa
