"""Find, change and restore every dropout site of a live model, by role.

``apply_dropout`` is exact: a model built with default rates and patched to rates r behaves bit for bit like one
built with rates r (``tests/test_exactness.py``). It sets ``nn.Dropout.p``, float attributes read by attention code,
swaps ``nn.Identity`` placeholders for real ``nn.Dropout`` when a rate becomes positive, and writes the new rates into
``model.config`` (and ``peft_config``) so ``save_pretrained`` / ``from_pretrained`` round-trips them. Every change is
recorded in a :class:`PatchReport`; ``restore_dropout`` replays it backwards. The sites of every role ``spec`` names
are made compile-ready (:mod:`dropout_tune.compiled_rates`), so later rate changes cost no recompile under
``torch.compile``; in eager mode nothing changes.

Example:
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("bert")
    >>> report = apply_dropout(model, "attention=0.2")
    >>> sorted({c.role for c in report.changes}), report.changes[0].new
    (['attention'], 0.2)
    >>> model.config.attention_probs_dropout_prob
    0.2
    >>> restore_dropout(model, report); model.config.attention_probs_dropout_prob
    0.1
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from torch import nn

from .compiled_rates import bank_of, has_bank, make_compile_ready, model_device, prepare_site, refresh_bank
from .injection import CONFIG_KEY as INJECTED_KEY, inject_missing, injectable_roles, injected_rates
from .masks import ELEMENT, MaskedDropout
from .registry import FamilyDropout, get_family
from .runtime import unwrap_model
from .sites import (  # noqa: F401 - DropoutSite, KINDS, inspect_*, current_rates are this module's public API too
    KINDS,
    LORA,
    SITE_KINDS,
    DropoutSite,
    FoundSite,
    current_rates,
    inspect_dropout,
    inspect_stochastic_depth,
    layer_positions,
    model_type_of,
    walk_sites,
)
from .spec import DropoutSpec
from .variants import VARIANTS_KEY, check_masks, depth_rate, recorded_variants, set_mask

SpecLike = Union[DropoutSpec, Mapping[str, Any], str, float, None]
_MISSING = object()


@dataclass(frozen=True)
class SiteChange:
    name: str
    role: str
    kind: str
    old: float
    new: float


@dataclass(frozen=True)
class ConfigChange:
    target: str  # "config" or "peft_config[<adapter>]"
    key: str
    old: Any
    new: Any


@dataclass
class PatchReport:
    """What ``apply_dropout`` changed; pass it to ``restore_dropout`` to undo exactly."""

    changes: list[SiteChange] = field(default_factory=list)
    config_changes: list[ConfigChange] = field(default_factory=list)
    missing_roles: tuple[str, ...] = ()
    unclassified: tuple[str, ...] = ()
    config_problems: tuple[str, ...] = ()
    _undo: list[tuple[Any, str, Any]] = field(default_factory=list, repr=False)
    _model: Optional[weakref.ref] = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.changes or self.config_changes)

    def by_role(self) -> dict[str, tuple[float, ...]]:
        """role -> sorted distinct new rates."""
        out: dict[str, set[float]] = {}
        for change in self.changes:
            out.setdefault(change.role, set()).add(change.new)
        return {role: tuple(sorted(ps)) for role, ps in out.items()}

    def summary(self) -> str:
        if not self:
            return "no dropout site changed"
        counts: dict[tuple[str, float, float], int] = {}
        for c in self.changes:
            counts[(c.role, c.old, c.new)] = counts.get((c.role, c.old, c.new), 0) + 1
        parts = [f"{role}: {old:g} -> {new:g} ({n} sites)" for (role, old, new), n in counts.items()]
        parts += [f"{c.target}.{c.key}: {c.old} -> {c.new}" for c in self.config_changes]
        return "; ".join(parts)


# ---- discovery ----------------------------------------------------------------------------------------------------


def _config_get(config: Any, key: str) -> Any:
    return getattr(config, key, None)


def plan_config(config: Any, family: FamilyDropout, spec: DropoutSpec) -> tuple[dict[str, float], list[str]]:
    """The config keys (and values) that express ``spec`` for ``config``, and the problems that prevent it.

    A key feeds one or more roles. Setting it changes all of them, so it is written only when every role it feeds
    either gets the same new rate or already has it. A key with a fallback (BERT's ``classifier_dropout`` is ``None``
    and then uses ``hidden_dropout_prob``) is pinned to the current effective rate when its fallback changes and its
    own role does not.
    """
    overrides: dict[str, float] = {}
    problems: list[str] = []
    for key, roles in family.config_keys.items():
        if key in family.config_fallbacks and _config_get(config, key) is None:
            continue  # handled with its fallback below
        new_rates = {spec[role] for role in roles if spec[role] is not None}
        if not new_rates:
            continue
        if len(new_rates) > 1:
            asked = ", ".join(f"{role}={spec[role]}" for role in roles if spec[role] is not None)
            problems.append(f"config key {key!r} feeds roles {', '.join(roles)} together and cannot hold {asked}")
            continue
        (rate,) = new_rates
        current = _config_get(config, key)
        untouched = [role for role in roles if spec[role] is None]
        if untouched and current is not None and float(current) != rate:
            problems.append(
                f"config key {key!r} feeds roles {', '.join(roles)} together; setting it to {rate} would also change "
                f"{', '.join(untouched)} (now {current}): give {', '.join(untouched)} the same rate")
            continue
        overrides[key] = rate
    for key, fallback in family.config_fallbacks.items():
        if _config_get(config, key) is not None:
            continue
        own = {spec[role] for role in family.roles_of_key(key) if spec[role] is not None}
        if own:
            overrides[key] = own.pop()
        elif fallback in overrides and _config_get(config, fallback) not in (None, overrides[fallback]):
            overrides[key] = float(_config_get(config, fallback))  # keep this role where it is
    return overrides, problems


def _default_config(model_type: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type)
    except ValueError:
        raise ValueError(f"unknown model type {model_type!r}") from None


def config_overrides(model_type_or_config: Any, spec: SpecLike) -> dict[str, float]:
    """Config kwargs that build a model with ``spec``'s rates, for ``from_pretrained(..., **overrides)``.

    Raises ValueError when the family's config cannot express the spec (two roles share one key but got different
    rates), or when the family is not in the registry.

    Example:
        >>> config_overrides("bert", "attention=0.2,embedding=0.05,hidden=0.05")
        {'hidden_dropout_prob': 0.05, 'attention_probs_dropout_prob': 0.2, 'classifier_dropout': 0.1}
        >>> config_overrides("t5", "attention=0.2,hidden=0.1")
        Traceback (most recent call last):
        ...
        ValueError: t5: config key 'dropout_rate' feeds roles embedding, attention, hidden, activation together and cannot hold attention=0.2, hidden=0.1; use apply_dropout on the loaded model for per-role rates
    """
    spec = DropoutSpec.coerce(spec)
    if isinstance(model_type_or_config, str):
        model_type, config = model_type_or_config, _default_config(model_type_or_config)
    else:
        config = model_type_or_config
        model_type = getattr(config, "model_type", None)
    family = get_family(model_type)
    if family is None:
        raise ValueError(f"model type {model_type!r} is not in the dropout registry, so its config keys are unknown; "
                         f"load it and use apply_dropout (known: {', '.join(_known())})")
    overrides, problems = plan_config(config, family, spec)
    if problems:
        raise ValueError(f"{model_type}: {problems[0]}; use apply_dropout on the loaded model for per-role rates")
    return overrides


def _known() -> list[str]:
    from .registry import known_families

    return list(known_families())


# ---- patching -----------------------------------------------------------------------------------------------------


def _set(report: PatchReport, obj: Any, attr: str, value: Any) -> None:
    report._undo.append((obj, attr, getattr(obj, attr, _MISSING)))
    setattr(obj, attr, value)


def _write_configs(model: nn.Module, spec: DropoutSpec, report: PatchReport, sites: list[DropoutSite]) -> None:
    config = getattr(model, "config", None)
    family = get_family(model_type_of(model))
    if config is not None and family is not None:
        overrides, problems = plan_config(config, family, spec)
        report.config_problems = tuple(problems)
        for key, value in overrides.items():
            old = getattr(config, key, None)
            if old != value:
                _set(report, config, key, value)
                report.config_changes.append(ConfigChange("config", key, old, value))
    old_variants = getattr(config, VARIANTS_KEY, None)
    variants = recorded_variants(model, spec, old_variants)
    if config is not None and variants != (old_variants or {}):
        _set(report, config, VARIANTS_KEY, variants)  # for save_pretrained; load_model gives the sites these again
        report.config_changes.append(ConfigChange("config", VARIANTS_KEY, old_variants, variants))
    injected, old_injected = injected_rates(model), getattr(config, INJECTED_KEY, None)
    if config is not None and injected != (old_injected or {}):
        _set(report, config, INJECTED_KEY, injected)  # for save_pretrained; load_model re-injects these rates
        report.config_changes.append(ConfigChange("config", INJECTED_KEY, old_injected, injected))
    peft_config = getattr(model, "peft_config", None)
    if spec.lora is not None and isinstance(peft_config, Mapping):
        adapters = {s.attr for s in sites if s.role == LORA}
        for adapter, adapter_config in peft_config.items():
            old = getattr(adapter_config, "lora_dropout", None)
            if adapter in adapters and old is not None and old != spec.lora:
                _set(report, adapter_config, "lora_dropout", spec.lora)
                report.config_changes.append(ConfigChange(f"peft_config[{adapter}]", "lora_dropout", old, spec.lora))


def apply_dropout(model: nn.Module, spec: SpecLike, *, warn_missing: bool = True, strict: bool = False,
                  write_config: bool = True) -> PatchReport:
    """Set the dropout rate of every site whose role ``spec`` names; return what changed.

    Only sites whose rate really changes are touched. A role that ``spec`` names but the model lacks is reported in
    ``missing_roles`` (and warned about unless ``warn_missing=False``); sites the registry could not classify are left
    alone and reported in ``unclassified``. ``strict=True`` refuses families not in the registry. With
    ``write_config`` the new rates go into ``model.config`` where the family has keys for them (a warning says when
    the config cannot express the spec, so a reload would not give the same rates).

    Example:
        >>> from dropout_tune.testing import tiny_model
        >>> model = tiny_model("llama")
        >>> print(apply_dropout(model, {"attention": 0.1}).summary())
        attention: 0 -> 0.1 (2 sites); config.attention_dropout: 0.0 -> 0.1
    """
    spec = DropoutSpec.coerce(spec)
    model_type = model_type_of(model)
    if strict and get_family(model_type) is None:
        raise ValueError(f"model type {model_type!r} is not in the dropout registry (strict=True); "
                         f"known: {', '.join(_known())}")
    report = PatchReport(_model=weakref.ref(model))
    found = list(walk_sites(model))
    rates, masks = spec.as_dict(), dict(spec.masks)
    check_masks(found, masks, model)  # before any change: a refused mask leaves the model as it was
    positions = layer_positions(model) if spec.depths else []
    bank = bank_of(model)
    device = model_device(model)
    if inject_missing(model, rates, {f.site.role for f in found}, lambda *change: _set(report, *change)):
        found = list(walk_sites(model))  # the injected sites, at p = 0, get their rates below like any other site
    sites = [f.site for f in found]
    for item in found:
        site = item.site
        new = rates.get(site.role) if site.role else None
        if new is None:
            continue
        new = depth_rate(new, spec.depth_of(site.role), site, positions)
        # ready even when the rate stays: a schedule starts at the load-time rate, and making the site ready later,
        # after the first compiled step, would cost a recompile
        prepare_site(site.kind, item.owner, site.attr, bank, device)
        mask = masks.get(site.role)
        if mask is not None and mask != site.mask and site.kind != "placeholder":
            set_mask(lambda *change: _set(report, *change), item.owner, site.attr, mask, bank, device)
        if new == site.p:
            continue
        if site.kind == "placeholder":
            placeholder = getattr(item.owner, site.attr)
            dropout = (nn.Dropout(new) if mask in (None, ELEMENT) else MaskedDropout(new, mask=mask)).train(
                placeholder.training)
            _set(report, item.owner, site.attr, make_compile_ready(dropout, ("p",), bank, device=device))
        else:
            _set(report, *SITE_KINDS[site.kind].rate_holder(item.owner, site.attr), new)
        report.changes.append(SiteChange(site.name, site.role, site.kind, site.p, new))
    present = {s.role for s in sites} | set(injectable_roles(model))
    report.missing_roles = tuple(role for role, _ in spec.items() if role not in present)
    report.unclassified = tuple(s.name for s in sites if s.role is None)
    if write_config:
        _write_configs(model, spec, report, sites)
    refresh_bank(bank, _holders(found))
    _warn(report, model_type, warn_missing)
    return report


def _holders(found: Iterable[FoundSite]) -> Iterator[tuple[nn.Module, Any, str]]:
    """(owner, rate holder, its attribute) of every site: what ``refresh_bank`` binds."""
    return ((item.owner, *SITE_KINDS[item.site.kind].rate_holder(item.owner, item.site.attr)) for item in found)


def _warn(report: PatchReport, model_type: Optional[str], warn_missing: bool) -> None:
    if warn_missing and report.missing_roles:
        warnings.warn(f"{model_type}: no dropout sites for role(s) {', '.join(report.missing_roles)}; "
                      f"nothing to set there", stacklevel=3)
    if report.unclassified:
        warnings.warn(f"{model_type}: {len(report.unclassified)} dropout site(s) could not be given a role and were "
                      f"left alone: {', '.join(report.unclassified[:5])}", stacklevel=3)
    if report.config_problems and report.changes:
        warnings.warn(f"{model_type}: model.config cannot express these rates ({report.config_problems[0]}); "
                      f"save_pretrained will not reproduce them on reload", stacklevel=3)


def restore_dropout(model: nn.Module, report: PatchReport) -> None:
    """Undo ``report`` exactly (rates, placeholder modules, config values), newest change first.

    ``report`` must come from ``apply_dropout`` on this same ``model`` (or the model inside its DDP /
    ``torch.compile`` wrapper); a report from another model raises ValueError instead of restoring that one.
    Compile-ready sites stay ready (they behave the same in eager mode).
    """
    made_on = report._model() if report._model is not None else unwrap_model(model)
    if made_on is not model and made_on is not unwrap_model(model):
        other = "a model that no longer exists" if made_on is None else f"another {type(made_on).__name__}"
        raise ValueError(f"restore_dropout: the report was made by apply_dropout on {other}, not on this "
                         f"{type(model).__name__}; pass the model the report came from")
    for obj, attr, old in reversed(report._undo):
        if old is _MISSING:
            delattr(obj, attr)
            continue
        current = getattr(obj, attr, None)
        if isinstance(old, nn.Module) and isinstance(current, nn.Module):
            old.train(current.training)  # a module put back follows the model's train / eval mode since the swap
        setattr(obj, attr, old)
    report._undo.clear()
    if has_bank(made_on):
        refresh_bank(bank_of(made_on), _holders(walk_sites(made_on)))


@contextlib.contextmanager
def dropout_overrides(model: nn.Module, spec: SpecLike, **kwargs: Any) -> Iterator[PatchReport]:
    """``apply_dropout`` for the duration of a ``with`` block, restored on exit (also on error).

    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("bert")
    >>> with dropout_overrides(model, 0.0):
    ...     current_rates(model)["hidden"]
    0.0
    >>> current_rates(model)["hidden"]
    0.1
    """
    report = apply_dropout(model, spec, **kwargs)
    try:
        yield report
    finally:
        restore_dropout(model, report)
