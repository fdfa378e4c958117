"""Dropout variants on a model's sites: which sites can take a mask kind (and the one-line refusal), giving a site
its mask, the per-layer rate of a depth profile, and the masks and depths ``save_pretrained`` records for
``load_model`` (config key :data:`VARIANTS_KEY`). ``apply_dropout`` (patching) calls these; they change nothing by
themselves except through the ``record`` callable it passes, its undo log.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from torch import nn

from .compiled_rates import make_compile_ready, original_class
from .injection import InjectedDropout, injectable_roles
from .masks import ELEMENT, MaskedDropout
from .roles import ROLES, Role
from .sites import SITE_KINDS, DropoutSite, FoundSite, current_rates, inspect_dropout
from .spec import DropoutSpec

HEAD = Role.HEAD.value
Record = Callable[[Any, str, Any], None]


#: config key under which ``save_pretrained`` records each role's mask kind and depth profile (role -> {"mask": ...,
#: "depth": ...}, for roles whose sites are not plain element dropout at a uniform rate).
VARIANTS_KEY = "dropout_tune_variants"


def recorded_variants(model: nn.Module, spec: DropoutSpec, recorded: Optional[Mapping[str, Mapping[str, str]]]
              ) -> dict[str, dict[str, str]]:
    """What :data:`VARIANTS_KEY` should hold now: each role's mask as its sites have it (when they share one other
    than ``element``), and its depth profile as ``spec`` sets it (as recorded before for roles ``spec`` leaves
    alone: a depth cannot be read back from the rates alone)."""
    masks: dict[str, set] = {}
    for site in inspect_dropout(model):
        if site.role not in (None, HEAD) and site.kind != "placeholder":  # a head site's mask is its own
            masks.setdefault(site.role, set()).add(site.mask)
    named = {role for role, _ in spec.items()}
    out: dict[str, dict[str, str]] = {}
    for role in [r for r in ROLES if r in masks or r in (recorded or {})]:
        entry = {}
        if len(masks.get(role, ())) == 1 and ELEMENT not in masks[role]:
            entry["mask"] = next(iter(masks[role]))
        depth = spec.depth_of(role) if role in named else dict((recorded or {}).get(role, {})).get("depth", "uniform")
        if depth != "uniform":
            entry["depth"] = depth
        if entry:
            out[role] = entry
    return out


def variants_spec(model: nn.Module) -> DropoutSpec:
    """The masks and depth profiles ``model.config`` records (:data:`VARIANTS_KEY`), at the rates its sites have
    now: what ``load_model`` applies to a reloaded model (empty when none is recorded).

    >>> from dropout_tune import apply_dropout
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("bert")
    >>> _ = apply_dropout(model, "hidden=0.2:mask=token:depth=linear,embedding=0.2")
    >>> model.config.dropout_tune_variants
    {'hidden': {'mask': 'token', 'depth': 'linear'}}
    >>> variants_spec(tiny_model("bert", dropout_tune_variants=model.config.dropout_tune_variants))
    DropoutSpec(hidden=0.1:mask=token:depth=linear)
    """
    recorded = getattr(getattr(model, "config", None), VARIANTS_KEY, None) or {}
    if not isinstance(recorded, Mapping):
        raise ValueError(f"config {VARIANTS_KEY}: expected a mapping of role to {{mask, depth}}, got {recorded!r}")
    rates = current_rates(model)
    roles = [role for role in recorded if role in rates]
    return DropoutSpec(**{role: rates[role] for role in roles},
                       masks={r: recorded[r]["mask"] for r in roles if "mask" in recorded[r]},
                       depths={r: recorded[r]["depth"] for r in roles if "depth" in recorded[r]})


def _maskable(item: FoundSite) -> bool:
    if not SITE_KINDS[item.site.kind].maskable:
        return False
    module = getattr(item.owner, item.site.attr)
    return isinstance(module, nn.Identity) or original_class(module) in (nn.Dropout, MaskedDropout) or isinstance(
        module, InjectedDropout)


def check_masks(found: list[FoundSite], masks: Mapping[str, str], model: nn.Module) -> None:
    """A mask kind only where the site's dropout is one module call it can replace; else one line naming the site
    and the roles of this model that can take a mask."""
    if HEAD in masks:
        raise ValueError(f"mask={masks[HEAD]} for role head: a head site drops whole attention heads (its own mask); "
                         f"give the head role a rate only")
    for item in found:
        mask = masks.get(item.site.role) if item.site.role else None
        if mask is None or mask == ELEMENT or _maskable(item):
            continue
        can = sorted({f.site.role for f in found if f.site.role and _maskable(f)} | set(injectable_roles(model)))
        why = ("its rate is a float the model's own code passes to F.dropout or to the attention kernel"
               if SITE_KINDS[item.site.kind].owner_gated else f"it is a {type(getattr(item.owner, item.site.attr)).__name__}")
        raise ValueError(f"mask={mask} for role {item.site.role}: site {item.site.name} cannot honour it exactly "
                         f"({why}); roles of this model that can take a mask: {', '.join(can) or 'none'}")


def set_mask(record: Record, owner: nn.Module, attr: str, mask: str, bank, device) -> None:
    """Give the site ``owner.attr`` mask kind ``mask``: set it on a masked module, or put a compile-ready
    :class:`MaskedDropout` with the same rate in place of a plain ``nn.Dropout``; ``record(obj, attr, value)``
    sets and logs each change (apply_dropout's undo log)."""
    module = getattr(owner, attr)
    if isinstance(module, MaskedDropout):
        record(module, "mask", mask)
        return
    masked = MaskedDropout(module.p, module.inplace, mask=mask).train(module.training)
    record(owner, attr, make_compile_ready(masked, ("p",), bank, device=device))


def depth_rate(p: float, depth: str, site: DropoutSite, positions: list[tuple[str, int, int]]) -> float:
    """The rate of ``site`` under depth profile ``depth``: ``p * l / (L - 1)`` in layer ``l`` of ``L`` for
    ``linear`` (timm's ``linspace(0, p, L)``)."""
    if depth == "uniform":
        return p
    for prefix, layer, count in positions:
        if site.name.startswith(prefix):
            return p * layer / (count - 1)
    raise ValueError(f"depth={depth} for role {site.role}: site {site.name} is not inside a stack of layers; a "
                     f"depth profile applies to roles that live in layers")
