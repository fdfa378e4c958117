"""Tokenization of a task's text columns: one function, used wherever a task's dataset meets a tokenizer.

>>> import datasets
>>> from transformers import AutoTokenizer
>>> from dropout_tune.loading import resolve_model_path
>>> tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
>>> data = datasets.Dataset.from_dict({"text": ["a good film"], "label": [1]})
>>> tokenize_task(data, tokenizer, ["text"], max_length=4).column_names
['label', 'input_ids', 'token_type_ids', 'attention_mask']
>>> tokenize_task(data, tokenizer, ["text"], max_length=4) is tokenize_task(data, tokenizer, ["text"], max_length=4)
True

The same data, tokenizer, columns and length tokenize once per process: the trials of a search (each builds its
Trainer from the same splits) reuse the first trial's tokens (``CACHE_SIZE`` results are kept; the data is keyed by
its ``datasets`` fingerprint, the tokenizer by its class, path, vocabulary size and truncation side). Datasets are not
changed in place anywhere in this package (``map``, ``select`` and ``remove_columns`` return new ones), so sharing
the result is safe.
"""

from __future__ import annotations

import collections
from typing import Any, Optional, Sequence

CACHE_SIZE = 4
_cache: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()


def _data_key(data: Any) -> Optional[tuple]:
    if hasattr(data, "_fingerprint"):
        return (data._fingerprint,)
    if isinstance(data, dict):  # a DatasetDict
        parts = [(name, getattr(split, "_fingerprint", None)) for name, split in sorted(data.items())]
        return tuple(parts) if all(fp for _, fp in parts) else None
    return None


def _tokenizer_key(tokenizer: Any) -> tuple:
    return (type(tokenizer).__qualname__, getattr(tokenizer, "name_or_path", None), len(tokenizer),
            getattr(tokenizer, "truncation_side", None), getattr(tokenizer, "model_max_length", None))


def tokenize_task(data: Any, tokenizer: Any, text_columns: Sequence[str], max_length: int) -> Any:
    """``data`` (a ``datasets.Dataset`` or ``DatasetDict``) with its ``text_columns`` replaced by the tokenizer's
    outputs, truncated to ``max_length`` tokens and left unpadded (a collator pads each batch); two text columns
    are encoded as a pair. Every other column (the label) is kept."""
    columns = list(text_columns)
    data_key = _data_key(data)
    key = None if data_key is None else (data_key, _tokenizer_key(tokenizer), tuple(columns), max_length)
    if key is not None and key in _cache:
        _cache.move_to_end(key)
        return _cache[key]

    def encode(rows):
        return tokenizer(*[rows[c] for c in columns], truncation=True, max_length=max_length)

    result = data.map(encode, batched=True, remove_columns=columns, desc="tokenize")
    if key is not None:
        _cache[key] = result
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result
