"""Tokenization of a task's text columns: one function, used wherever a task's dataset meets a tokenizer.

>>> import datasets
>>> from transformers import AutoTokenizer
>>> from dropout_tune.loading import resolve_model_path
>>> tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
>>> data = datasets.Dataset.from_dict({"text": ["a good film"], "label": [1]})
>>> tokenize_task(data, tokenizer, ["text"], max_length=4).column_names
['label', 'input_ids', 'token_type_ids', 'attention_mask']
"""

from __future__ import annotations

from typing import Any, Sequence


def tokenize_task(data: Any, tokenizer: Any, text_columns: Sequence[str], max_length: int) -> Any:
    """``data`` (a ``datasets.Dataset`` or ``DatasetDict``) with its ``text_columns`` replaced by the tokenizer's
    outputs, truncated to ``max_length`` tokens and left unpadded (a collator pads each batch); two text columns
    are encoded as a pair. Every other column (the label) is kept."""
    columns = list(text_columns)

    def encode(rows):
        return tokenizer(*[rows[c] for c in columns], truncation=True, max_length=max_length)

    return data.map(encode, batched=True, remove_columns=columns, desc="tokenize")
