"""What ``mc_predict`` feeds the model: batches from a dict, a DataLoader or a ``datasets.Dataset``, split into
model inputs and labels, sliced and repeated for batched sampling."""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch
from torch import nn

LABEL_KEYS = ("labels", "label")


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a ``PeftModel`` (or the model itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def input_names(model: nn.Module) -> set[str]:
    """Explicit parameters of the transformers model's ``forward`` that take inputs (labels excluded)."""
    parameters = inspect.signature(transformers_model(model).forward).parameters
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


def batches(data: Any, model: nn.Module, batch_size: int, tokenizer: Any, accelerator: Any) -> Iterable[Mapping]:
    """``data`` as an iterable of batch dicts (sharded over processes under ``accelerator``)."""
    if isinstance(data, Mapping):
        if accelerator is not None and accelerator.num_processes > 1:
            raise ValueError("data: with several processes pass a DataLoader or a datasets.Dataset, not one batch "
                             "dict (every process would see the same examples)")
        return [data]
    loader = data
    if hasattr(data, "column_names") and hasattr(data, "select_columns"):  # a datasets.Dataset
        names = input_names(model)
        columns = [c for c in data.column_names if c in names or c in LABEL_KEYS]
        if not any(c in names for c in columns):
            raise ValueError(f"data: the dataset has no model input column (columns: {', '.join(data.column_names)};"
                             f" expected some of {', '.join(sorted(names))}); tokenize it first")
        if tokenizer is not None:
            from transformers import DataCollatorWithPadding

            collate = DataCollatorWithPadding(tokenizer)
        else:
            collate = _pad_collate(getattr(transformers_model(model).config, "pad_token_id", None) or 0)
        loader = torch.utils.data.DataLoader(data.select_columns(columns), batch_size=batch_size,
                                             collate_fn=collate, shuffle=False)
    if accelerator is not None and isinstance(loader, torch.utils.data.DataLoader) and not hasattr(
            loader, "gradient_state"):  # accelerate's prepared loaders carry a gradient_state
        loader = accelerator.prepare_data_loader(loader)
    return loader


def split_batch(batch: Mapping, names: set[str], device: torch.device) -> tuple[dict, Optional[torch.Tensor]]:
    """(model inputs on ``device``, labels or None) of one batch."""
    inputs = {k: v.to(device) for k, v in batch.items() if k in names and isinstance(v, torch.Tensor)}
    if not inputs:
        raise ValueError(f"data: a batch has none of the model's inputs (keys: {', '.join(batch)}; expected some of "
                         f"{', '.join(sorted(names))})")
    labels = next((batch[k] for k in LABEL_KEYS if isinstance(batch.get(k), torch.Tensor)), None)
    return inputs, (labels.to(device) if labels is not None else None)


def rows(inputs: Mapping) -> int:
    return next(iter(inputs.values())).shape[0]


def slice_rows(inputs: Mapping, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in inputs.items()}


def repeat(x: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` copies of the batch, copy-major: rows ``[c*B, (c+1)*B)`` are copy ``c``."""
    return x if copies == 1 else x.repeat(copies, *([1] * (x.dim() - 1)))
