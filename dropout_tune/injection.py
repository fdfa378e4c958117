"""Dropout where a decoder architecture has none: injected sites for Llama-style families.

Llama, Mistral, Qwen2/3 and Gemma build attention dropout only (a float, usually 0). For a role such a family lacks,
``apply_dropout`` adds *injected* sites, with the semantics of BERT's ``hidden_dropout`` / GPT-2's ``resid_pdrop`` /
``embd_pdrop``:

* ``embedding``: on the output of the token embedding (``embed_tokens``), before the first layer;
* ``hidden``: on the output of each layer's self-attention block (the first element of its output tuple) and of its
  MLP block, before the residual add;
* ``activation``: on the input of the MLP's ``down_proj`` (``act(gate) * up``).

An injected site is an :class:`InjectedDropout` (an ``nn.Dropout``) registered as a submodule of the block it
belongs to, so ``.train()`` / ``.eval()``, MC dropout and ``apply_dropout`` treat it like any dropout module; a
forward hook (pre-hook for ``activation``) on the host module calls it. In train mode the forward equals, bit for
bit under the same seed, the model with those ``F.dropout`` calls written in (in this order within a layer:
attention output, activation, MLP output); eval mode is untouched; a rate of 0 installs nothing and, once installed,
skips the call. ``restore_dropout`` removes every site and hook, giving back the original model.

Where the sites go is data: the family's :class:`~dropout_tune.registry.InjectionPoints` in the registry.

Example:
    >>> from dropout_tune import apply_dropout, inspect_dropout, restore_dropout
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> report = apply_dropout(model, "hidden=0.1")
    >>> [s.name for s in inspect_dropout(model) if s.role == "hidden"][:2]
    ['model.layers.0.attention_output_dropout', 'model.layers.0.mlp_output_dropout']
    >>> {(s.kind, s.p) for s in inspect_dropout(model) if s.role == "hidden"}
    {('injected', 0.1)}
    >>> model.config.dropout_tune_injected
    {'hidden': 0.1}
    >>> restore_dropout(model, report); hasattr(model.model.layers[0], "attention_output_dropout")
    False
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import torch
from torch import nn

from .registry import InjectionPoints, get_family
from .roles import Role

#: config key under which ``save_pretrained`` records the injected rates (role -> p, roles with p > 0).
CONFIG_KEY = "dropout_tune_injected"

EMBEDDING, HIDDEN, ACTIVATION = Role.EMBEDDING.value, Role.HIDDEN.value, Role.ACTIVATION.value

#: attribute names the injected modules are registered under (on the base model, a layer, the MLP).
EMBEDDING_NAME = "embedding_dropout"
ATTENTION_OUTPUT_NAME = "attention_output_dropout"
MLP_OUTPUT_NAME = "mlp_output_dropout"
ACTIVATION_NAME = "activation_dropout"

Record = Callable[[Any, str, Any], None]


class InjectedDropout(nn.Dropout):
    """A dropout site dropout-tune added to a model that had none for ``role``.

    >>> InjectedDropout("hidden", 0.1)
    InjectedDropout(p=0.1, inplace=False, role=hidden)
    """

    def __init__(self, role: str, p: float = 0.0) -> None:
        super().__init__(p)
        self.role = role

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, role={self.role}"


def _skips(dropout: InjectedDropout) -> bool:
    """True when calling ``dropout`` would return its input: eval mode, or a rate of 0 (no RNG draw either).
    Under torch.compile the rate is not read here: the graph would then depend on its value (a recompile per rate);
    the compile-ready dropout module applies its rate tensor itself (see compiled_rates)."""
    if not dropout.training:
        return True
    return not torch.compiler.is_compiling() and dropout.p == 0


def _drop_output(dropout: InjectedDropout, module: nn.Module, args: tuple, output: Any) -> Any:
    """Forward hook: dropout on the output, or on its first element when the host returns a tuple (attention)."""
    if _skips(dropout):
        return None
    if isinstance(output, tuple):
        return (dropout(output[0]),) + output[1:]
    return dropout(output)


def _drop_input(dropout: InjectedDropout, module: nn.Module, args: tuple) -> Optional[tuple]:
    """Forward pre-hook: dropout on the first positional input."""
    if _skips(dropout) or not args:
        return None
    return (dropout(args[0]),) + args[1:]


class _InjectedSite:
    """One injected dropout: its module, where it is registered, and the hook on its host that calls it.

    Installing and removing go through the ``installed`` property so that ``apply_dropout`` can record them in its
    undo log (``record(site, "installed", True)``) and ``restore_dropout`` removes the site like any other change.
    """

    def __init__(self, role: str, parent: nn.Module, name: str, host: nn.Module, on_input: bool) -> None:
        self.dropout = InjectedDropout(role).train(host.training)
        self.parent, self.name, self.host, self.on_input = parent, name, host, on_input
        self._handle: Any = None

    @property
    def installed(self) -> bool:
        return self._handle is not None

    @installed.setter
    def installed(self, value: bool) -> None:
        if value and self._handle is None:
            self.parent.add_module(self.name, self.dropout)
            if self.on_input:
                self._handle = self.host.register_forward_pre_hook(partial(_drop_input, self.dropout))
            else:
                self._handle = self.host.register_forward_hook(partial(_drop_output, self.dropout))
        elif not value and self._handle is not None:
            self._handle.remove()
            self._handle = None
            delattr(self.parent, self.name)


def injection_points(model_or_config: Any) -> Optional[InjectionPoints]:
    """The registry's injection points of the family of a model or a config (None when it has none)."""
    config = getattr(model_or_config, "config", model_or_config)
    family = get_family(getattr(config, "model_type", None))
    return getattr(family, "injection", None)


def injectable_roles(model_or_config: Any) -> tuple[str, ...]:
    """Roles ``apply_dropout`` can add sites for in a model of this family (empty for families without injection
    points); a config works as well as a model, so a caller can ask before loading weights.

    >>> from dropout_tune.testing import tiny_model
    >>> injectable_roles(tiny_model("llama")), injectable_roles(tiny_model("bert").config)
    (('embedding', 'hidden', 'activation'), ())
    """
    points = injection_points(model_or_config)
    return points.roles() if points is not None else ()


def _bases(model: nn.Module, points: InjectionPoints) -> Iterator[nn.Module]:
    """The decoder base models inside ``model`` (a ``LlamaModel`` inside a head, a PEFT wrapper, ...)."""
    for module in model.modules():
        if isinstance(getattr(module, points.layers, None), nn.ModuleList) and (
                points.embedding is None or isinstance(getattr(module, points.embedding, None), nn.Module)):
            yield module


def _planned_sites(model: nn.Module, points: InjectionPoints, roles: Iterable[str]) -> Iterator[_InjectedSite]:
    """Sites to add for ``roles``, in forward order; a site whose name is taken (already injected) is skipped."""
    roles = set(roles)

    def site(role: str, parent: nn.Module, name: str, host_path: str, on_input: bool) -> Iterator[_InjectedSite]:
        if name not in parent._modules and name not in vars(parent):
            yield _InjectedSite(role, parent, name, parent.get_submodule(host_path), on_input)

    for base in _bases(model, points):
        if EMBEDDING in roles and points.embedding is not None:
            yield from site(EMBEDDING, base, EMBEDDING_NAME, points.embedding, False)
        for layer in getattr(base, points.layers):
            if HIDDEN in roles and points.attention_output is not None:
                yield from site(HIDDEN, layer, ATTENTION_OUTPUT_NAME, points.attention_output, False)
            if ACTIVATION in roles and points.activation is not None:
                owner_path, _, host_name = points.activation.rpartition(".")
                owner = layer.get_submodule(owner_path) if owner_path else layer
                yield from site(ACTIVATION, owner, ACTIVATION_NAME, host_name, True)
            if HIDDEN in roles and points.mlp_output is not None:
                yield from site(HIDDEN, layer, MLP_OUTPUT_NAME, points.mlp_output, False)


def inject_missing(model: nn.Module, rates: Mapping[str, Optional[float]], present_roles: Iterable[str],
                   record: Record) -> bool:
    """Add injected sites (at p = 0) for each role of ``rates`` with a rate > 0 that ``model``'s family can inject
    and that has no site in ``model`` (``present_roles``); ``record(obj, attr, value)`` sets and logs each change so
    it can be undone. Returns True when a site was added (the caller then sets its rate like any other site's).
    """
    points = injection_points(model)
    if points is None:
        return False
    present = set(present_roles)
    wanted = [role for role in points.roles() if (rates.get(role) or 0.0) > 0 and role not in present]
    added = False
    for site in _planned_sites(model, points, wanted):
        record(site, "installed", True)
        added = True
    return added


def injected_rates(model: nn.Module) -> dict[str, float]:
    """role -> the largest rate among ``model``'s injected sites, for roles with a rate > 0 (what gets persisted).

    >>> from dropout_tune import apply_dropout
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("qwen2")
    >>> _ = apply_dropout(model, "embedding=0.05,activation=0.1")
    >>> injected_rates(model)
    {'embedding': 0.05, 'activation': 0.1}
    """
    rates: dict[str, float] = {}
    for module in model.modules():
        if isinstance(module, InjectedDropout) and module.p > 0:
            rates[module.role] = max(rates.get(module.role, 0.0), float(module.p))
    return {role: rates[role] for role in (EMBEDDING, HIDDEN, ACTIVATION) if role in rates}


def persisted_rates(config: Any) -> dict[str, float]:
    """The injected rates a saved config records (``{}`` when none).

    >>> from types import SimpleNamespace
    >>> persisted_rates(SimpleNamespace(dropout_tune_injected={"hidden": 0.1}))
    {'hidden': 0.1}
    """
    value = getattr(config, CONFIG_KEY, None)
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"config {CONFIG_KEY}: expected a mapping of role to rate, got {value!r}")
    return {str(role): float(p) for role, p in value.items()}


def line_up(before: list, after: list) -> list:
    """``before`` with a row for each site that a patch added (an injected site, reported with p = 0 and kind
    ``absent``), in ``after``'s order: the rows of a before -> after table.

    >>> from dropout_tune import apply_dropout, inspect_dropout
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> before = inspect_dropout(model)
    >>> _ = apply_dropout(model, "embedding=0.1")
    >>> [(s.name, s.kind, s.p) for s in line_up(before, inspect_dropout(model)) if s.role == "embedding"]
    [('model.embedding_dropout', 'absent', 0.0)]
    """
    from dataclasses import replace

    by_name = {site.name: site for site in before}
    return [by_name.get(site.name) or replace(site, p=0.0, kind="absent") for site in after]
