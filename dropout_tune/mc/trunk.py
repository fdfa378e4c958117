"""Trunk replay: run the bottom of the network once per batch, sample only the top ``k`` layers and the head."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..patching import DropoutSite
from ..registry import known_families, trunk_layers_path
from .inputs import transformers_model

def trunk_families() -> tuple[str, ...]:
    """The registry families whose entry names a layer stack (trunk mode covers exactly these)."""
    return tuple(m for m in known_families() if trunk_layers_path(m))


_MISSING = object()


def trunk_layers(model: nn.Module) -> nn.ModuleList:
    """The layer list trunk mode splits, or a ValueError naming the families it covers."""
    hf = transformers_model(model)
    model_type = getattr(getattr(hf, "config", None), "model_type", None)
    path = trunk_layers_path(model_type)
    layers: Any = None
    if path:
        layers = getattr(hf, "base_model", hf)
        for part in path.split("."):
            layers = getattr(layers, part, None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"mode='trunk' does not cover model type {model_type!r}; covered: "
                         f"{', '.join(trunk_families())} (use mode='loop' or 'replicate')")
    return layers


def _hidden_argument(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise ValueError("trunk mode: cannot find the hidden states a layer receives (neither its first positional "
                     "argument nor `hidden_states=`)")


def _pass_through(tuple_length: int):
    def forward(*args, **kwargs):
        hidden = _hidden_argument(args, kwargs)
        return hidden if tuple_length == 0 else (hidden,) + (None,) * (tuple_length - 1)
    return forward


class Trunk:
    """Runs layers ``[0, L-k)`` and everything before them once per batch, and the top ``k`` layers plus the head
    ``T`` times.

    In the deterministic pass (``capturing``) a forward pre-hook on layer ``L-k`` stores the hidden states it
    receives. In the sampled passes (``replaying``) the bottom layers are replaced by pass-through stubs and the same
    pre-hook substitutes the stored hidden states (repeated to the rows of the forward), so the model's own code
    runs the top layers, final norm, pooler and classifier; the embeddings still run (deterministically, in eval
    mode) but their output is discarded.
    """

    def __init__(self, model: nn.Module, stochastic_layers: int) -> None:
        layers = trunk_layers(model)
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
