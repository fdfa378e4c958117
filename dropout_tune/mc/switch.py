"""The switch that makes the chosen dropout sites of an eval-mode model stochastic, and nothing else:
``mc_dropout`` and the ``StochasticSwitch`` that ``mc_predict`` turns on and off around its sampled passes."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, Optional

from torch import nn

from ..patching import DropoutSite, SpecLike, apply_dropout, inspect_dropout, inspect_stochastic_depth, restore_dropout
from ..roles import ROLES
from ..sites import SITE_KINDS
from ..spec import DropoutSpec

SiteFilter = Callable[[DropoutSite, nn.Module], bool]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside the block; every module's own train flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


class StochasticSwitch:
    """The exact set of flags that turns the chosen dropout sites of an eval-mode model stochastic.

    ``on()`` sets ``training=True`` on each chosen dropout module (kind ``module``/``module_p``) and on each owner
    whose forward gates a chosen site (``module_p``/``attribute``) -- on that module alone, never recursively -- and
    neutralises what ``training=True`` would also switch on in those owners: the rates of the owner's sites that were
    not chosen (BART's and Whisper's layers own hidden and activation sites together), layerdrop / drop-path rates
    and gradient checkpointing. ``off()`` puts back what ``on()`` changed; ``close()`` also undoes the rates ``spec``
    set. ``sites`` are exactly the sites that drop; ``rates`` maps every role of the model to the largest rate its
    stochastic sites drop with (0.0 for a role none of whose sites is stochastic).
    """

    def __init__(self, model: nn.Module, spec: SpecLike = None, exclude: Optional[SiteFilter] = None) -> None:
        spec = DropoutSpec.coerce(spec)
        self.model = model
        self.report = apply_dropout(model, spec, warn_missing=False, write_config=False) if spec else None
        self._saved: Optional[tuple[list, list]] = None
        try:
            self._resolve(spec, exclude)
        except BaseException:
            self.close()
            raise

    def _resolve(self, spec: DropoutSpec, exclude: Optional[SiteFilter]) -> None:
        model = self.model
        chosen_roles = {role for role, _ in spec.items()} if spec else None
        modules = dict(model.named_modules())
        every_site: dict[str, DropoutSite] = {}
        for site in inspect_dropout(model):
            every_site.setdefault(site.name, site)  # a site reported twice (e.g. under two roles) is switched once
        self.sites: list[DropoutSite] = []
        targets: dict[int, nn.Module] = {}
        owners: dict[int, nn.Module] = {}
        for site in every_site.values():
            owner = modules[site.owner]
            if (site.kind == "placeholder" or site.p <= 0
                    or (chosen_roles is not None and site.role not in chosen_roles)
                    or (exclude is not None and exclude(site, owner))):
                continue
            self.sites.append(site)
            kind = SITE_KINDS[site.kind]
            if kind.module_switched:
                module = owner._modules[site.attr]
                targets[id(module)] = module
            if kind.owner_gated:
                targets[id(owner)] = owner
                owners[id(owner)] = owner
        chosen = {site.name for site in self.sites}
        self._knobs: list[tuple[Any, str, Any]] = []
        for site in every_site.values():  # sites that an owner switched on would also drop: rate 0 meanwhile
            if site.name in chosen or not SITE_KINDS[site.kind].owner_gated or site.p <= 0:
                continue
            owner = modules[site.owner]
            if id(owner) in owners:
                self._knobs.append((*SITE_KINDS[site.kind].rate_holder(owner, site.attr), 0.0))
        self._knobs += [(owner, "gradient_checkpointing", False) for owner in owners.values()
                        if getattr(owner, "gradient_checkpointing", False) is True]
        for depth_site in inspect_stochastic_depth(model):
            if depth_site.kind == "attribute" and depth_site.p > 0:
                self._knobs.append((modules[depth_site.owner], depth_site.attr, 0.0))
        self._targets = list(targets.values())
        present = {site.role for site in every_site.values() if site.role is not None}
        self.rates = {role: 0.0 for role in ROLES if role in present}
        for site in self.sites:
            if site.role is not None:
                self.rates[site.role] = max(self.rates[site.role], site.p)

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
        for obj, attr, value in reversed(knobs):
            setattr(obj, attr, value)
        self._saved = None

    def close(self) -> None:
        self.off()
        if self.report is not None:
            restore_dropout(self.model, self.report)
            self.report = None


def warn_if_inactive(switch: StochasticSwitch, caller: str, stacklevel: int) -> None:
    """Warn that sampling is pointless when no site of ``switch`` drops anything."""
    if not switch.sites:
        warnings.warn(f"{caller}: no dropout site with p > 0 is active in {type(switch.model).__name__}, so every "
                      f"sample equals the deterministic prediction; give rates, e.g. spec='attention=0.1'",
                      stacklevel=stacklevel + 1)


@contextlib.contextmanager
def mc_dropout(model: nn.Module, spec: SpecLike = None) -> Iterator[list[DropoutSite]]:
    """Every dropout site of ``model`` stochastic, everything else as in eval mode; yields the active sites.

    With ``spec`` (``DropoutSpec``, dict, ``"attention=0.1"`` or a float) only the roles it names are stochastic, at
    its rates (placeholders built with p=0 become real dropout when given p > 0), also where one module owns sites of
    several roles. No batch-norm update, layerdrop, drop-path or gradient checkpointing happens inside. On exit (also
    on error) every train flag, rate and module is exactly as before.

    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("llama")              # built with attention_dropout = 0
    >>> with mc_dropout(model, "attention=0.1") as sites:
    ...     [(s.role, s.p) for s in sites]
    [('attention', 0.1), ('attention', 0.1)]
    >>> model.model.layers[0].self_attn.attention_dropout, model.training
    (0.0, True)
    """
    with eval_mode(model):
        switch = StochasticSwitch(model, spec)
        try:
            warn_if_inactive(switch, "mc_dropout", stacklevel=3)
            switch.on()
            yield switch.sites
        finally:
            switch.close()
