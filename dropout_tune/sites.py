"""Where a live model's dropout sites are: every nn.Dropout, placeholder, float rate and injected site, with its
role (from the family's registry entry, or guessed) and kind. Read-only: patching.py changes what this finds.

Example:
    >>> from dropout_tune.testing import tiny_model
    >>> sorted({(s.role, s.kind) for s in inspect_dropout(tiny_model("bert"))})[:2]
    [('attention', 'module_p'), ('classifier', 'module')]
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Optional

from torch import nn

from .compiled_rates import original_class
from .injection import InjectedDropout
from .registry import DROPOUT_ATTR, STOCHASTIC_DEPTH_ATTR, FamilyDropout, get_family, guess_role
from .roles import Role

LORA = Role.LORA.value

@dataclass(frozen=True)
class SiteKind:
    """What one kind of site is: where its rate lives and what gates it. Patching, MC dropout and compile
    readiness read these facts here (compile readiness adds ``compiled_rates.PREPARE_BY_KIND[name]``); adding a
    kind is one entry in :data:`SITE_KINDS`, one there, and a test.

    >>> SITE_KINDS["module_p"].owner_gated, SITE_KINDS["module_p"].module_switched
    (True, True)
    """

    name: str
    description: str
    float_attribute: bool = False  # the rate is a float attribute of the owner (else a module's ``.p``)
    owner_gated: bool = False  # the owner's ``.training`` decides whether it drops (MC dropout flips the owner)
    module_switched: bool = False  # a dropout module whose ``.training`` MC dropout flips
    maskable: bool = False  # its dropout is one module call that a mask kind (masks.MaskedDropout) can replace

    def rate_holder(self, owner: nn.Module, attr: str) -> tuple[Any, str]:
        """The object whose attribute holds the rate, and that attribute."""
        return (owner, attr) if self.float_attribute else (getattr(owner, attr), "p")


#: name -> kind (see DropoutSite).
SITE_KINDS: dict[str, SiteKind] = {kind.name: kind for kind in (
    SiteKind("module", "an nn.Dropout called as a module", module_switched=True, maskable=True),
    SiteKind("module_p", "an nn.Dropout whose .p the attention code reads", owner_gated=True, module_switched=True),
    SiteKind("attribute", "a float the owner's forward reads", float_attribute=True, owner_gated=True),
    SiteKind("placeholder", "an nn.Identity built because the rate was 0", maskable=True),
    SiteKind("injected", "an nn.Dropout dropout-tune added, called by a hook", module_switched=True, maskable=True),
)}
KINDS = tuple(SITE_KINDS)


@dataclass(frozen=True)
class DropoutSite:
    """One place where a dropout rate lives.

    ``kind`` is ``module`` (an ``nn.Dropout`` called as a module), ``module_p`` (an ``nn.Dropout`` whose ``.p`` the
    attention code reads; the owner's ``.training`` gates it, not its own), ``attribute`` (a float read by the owner's
    forward, gated by the owner's ``.training``), ``placeholder`` (an ``nn.Identity`` built because the rate was 0) or
    ``injected`` (an ``nn.Dropout`` that ``apply_dropout`` added to a family without sites for the role; see
    :mod:`dropout_tune.injection`).
    ``role`` is None when the site could not be classified; ``guessed`` is True when the role came from name
    heuristics rather than the registry. ``mask`` is the site's mask kind (:mod:`dropout_tune.masks`):
    ``element`` unless ``apply_dropout`` gave it another.
    """

    name: str
    role: Optional[str]
    p: float
    kind: str
    owner: str
    attr: str
    owner_class: str
    guessed: bool = False
    mask: str = "element"


@dataclass(frozen=True)
class FoundSite:
    site: DropoutSite
    owner: nn.Module


def model_type_of(model: nn.Module) -> Optional[str]:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None)


@lru_cache(maxsize=None)
def _reads_p(owner_cls: type, attr: str) -> bool:
    """Does ``owner_cls.forward`` read ``self.<attr>.p`` (so the module's own train flag is ignored)?"""
    try:
        source = inspect.getsource(inspect.unwrap(owner_cls.forward))
    except (OSError, TypeError):
        return False
    return re.search(rf"self\.{re.escape(attr)}\.p\b", source) is not None


def _is_rate(value: Any) -> bool:
    return isinstance(value, (float, int)) and not isinstance(value, bool)


def _classify(family: Optional[FamilyDropout], owner_class: str, attr: str) -> tuple[Optional[str], bool]:
    """(role, guessed) of ``owner_class.attr``; registry first, name heuristics second."""
    if family is not None:
        role = family.role_of(owner_class, attr)
        if role is not None:
            return role, False
    return guess_role(owner_class, attr), True


def walk_sites(model: nn.Module, stochastic_depth: bool = False) -> Iterator[FoundSite]:
    """Every dropout site (or, with ``stochastic_depth=True``, every layerdrop / drop-path site) of ``model``."""
    family = get_family(model_type_of(model))
    for path, owner in model.named_modules():
        if isinstance(owner, nn.ModuleDict) and path.endswith("lora_dropout"):
            continue  # its entries are LoRA sites, reported through the parent by _walk_lora
        owner_class = type(owner).__name__
        prefix = f"{path}." if path else ""
        for attr, child in owner._modules.items():
            if child is None:
                continue
            if isinstance(child, nn.ModuleDict) and attr == "lora_dropout":
                yield from _walk_lora(f"{prefix}{attr}", child, stochastic_depth)
                continue
            is_sd = STOCHASTIC_DEPTH_ATTR.search(attr) or "droppath" in type(child).__name__.lower()
            if stochastic_depth:
                if is_sd:
                    p = float(getattr(child, "drop_prob", getattr(child, "p", 0.0)) or 0.0)
                    yield FoundSite(DropoutSite(prefix + attr, None, p, "module", path, attr, owner_class), owner)
                continue
            if is_sd:
                continue
            if isinstance(child, InjectedDropout):
                yield FoundSite(DropoutSite(prefix + attr, child.role, float(child.p), "injected", path, attr,
                                         owner_class, mask=child.mask), owner)
            elif isinstance(child, nn.modules.dropout._DropoutNd):
                role, guessed = _classify(family, owner_class, attr)
                kind = "module_p" if _reads_p(original_class(owner), attr) else "module"
                yield FoundSite(DropoutSite(prefix + attr, role, float(child.p), kind, path, attr, owner_class, guessed,
                                            getattr(child, "mask", "element")), owner)
            elif isinstance(child, nn.Identity):
                listed = family is not None and family.role_of(owner_class, attr) is not None
                if listed or (family is None and DROPOUT_ATTR.search(attr)):
                    role, guessed = _classify(family, owner_class, attr)
                    yield FoundSite(DropoutSite(prefix + attr, role, 0.0, "placeholder", path, attr, owner_class,
                                             guessed), owner)
        for attr, value in vars(owner).items():
            if attr[0] == "_" or not _is_rate(value):
                continue
            sd = (family is not None and family.is_stochastic_depth(owner_class, attr)) or bool(
                STOCHASTIC_DEPTH_ATTR.search(attr))
            if sd != stochastic_depth:
                continue
            if sd:
                yield FoundSite(DropoutSite(prefix + attr, None, float(value), "attribute", path, attr, owner_class),
                             owner)
                continue
            listed = family is not None and family.role_of(owner_class, attr) is not None
            if listed or DROPOUT_ATTR.search(attr):
                role, guessed = _classify(family, owner_class, attr)
                yield FoundSite(DropoutSite(prefix + attr, role, float(value), "attribute", path, attr, owner_class,
                                         guessed), owner)


def _walk_lora(path: str, adapters: nn.ModuleDict, stochastic_depth: bool) -> Iterator[FoundSite]:
    if stochastic_depth:
        return
    for adapter, module in adapters.items():
        kind = "placeholder" if isinstance(module, nn.Identity) else "module"
        p = float(getattr(module, "p", 0.0))
        yield FoundSite(DropoutSite(f"{path}.{adapter}", LORA, p, kind, path, adapter, "ModuleDict",
                                    mask=getattr(module, "mask", "element")), adapters)


def layer_positions(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(prefix, l, L)`` for every layer of every stack of ``model``: a stack is an ``nn.ModuleList`` of two or more
    modules of one class (the outermost one where lists nest), ``prefix`` is ``"<stack path>.<l>."``. A site
    whose name starts with ``prefix`` lives in layer ``l`` of ``L`` (what a depth profile reads).

    >>> from dropout_tune.testing import tiny_model
    >>> layer_positions(tiny_model("bert"))
    [('bert.encoder.layer.0.', 0, 2), ('bert.encoder.layer.1.', 1, 2)]
    """
    stacks: list[tuple[str, int, int]] = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({type(child) for child in module}) != 1 or any(path.startswith(p) for p, _, _ in stacks):
            continue
        stacks += [(f"{path}.{i}.", i, len(module)) for i in range(len(module))]
    return stacks


def inspect_dropout(model: nn.Module) -> list[DropoutSite]:
    """Every dropout site of ``model``, in module order.

    Example:
        >>> from dropout_tune.testing import tiny_model
        >>> sites = inspect_dropout(tiny_model("llama"))
        >>> [(s.name, s.role, s.kind, s.p) for s in sites][:1]
        [('model.layers.0.self_attn.attention_dropout', 'attention', 'attribute', 0.0)]
    """
    return [found.site for found in walk_sites(model)]


def inspect_stochastic_depth(model: nn.Module) -> list[DropoutSite]:
    """Layerdrop / drop-path sites (role None): reported apart, never changed by ``apply_dropout``.

    >>> from dropout_tune.testing import tiny_model
    >>> [s.name for s in inspect_stochastic_depth(tiny_model("bart"))]
    ['model.encoder.layerdrop', 'model.decoder.layerdrop']
    """
    return [found.site for found in walk_sites(model, stochastic_depth=True)]


def current_rates(model: nn.Module) -> dict[str, float]:
    """role -> the largest rate among that role's sites (roles without sites are absent).

    >>> from dropout_tune.testing import tiny_model
    >>> current_rates(tiny_model("gpt2"))
    {'embedding': 0.1, 'attention': 0.1, 'hidden': 0.1}
    """
    rates: dict[str, float] = {}
    for site in inspect_dropout(model):
        if site.role is not None:
            rates[site.role] = max(rates.get(site.role, 0.0), site.p)
    return rates


# ---- config keys --------------------------------------------------------------------------------------------------
