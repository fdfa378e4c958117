"""dropout-tune inspect MODEL [--dropout SPEC] [--json]: list a model's dropout sites, collapsed over layers."""

from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict

from ..injection import line_up
from ..patching import DropoutSite, apply_dropout, inspect_dropout, inspect_stochastic_depth
from ..spec import DropoutSpec

_LAYER_INDEX = re.compile(r"\.\d+(?=\.|$)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="list every dropout site of a model, by role",
                                   description=__doc__)
    parser.add_argument("model", help="hub id, local directory, or 'minilm' (the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--dropout", metavar="SPEC", help="show before -> after for this spec, e.g. attention=0.1")
    parser.add_argument("--task", default="sequence-classification", help="head to load (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def collapse(sites: list[DropoutSite]) -> "OrderedDict[tuple, int]":
    """(name with layer indices as *, role, kind, p) -> count, in model order.

    >>> from dropout_tune.testing import tiny_model
    >>> rows = collapse(inspect_dropout(tiny_model("llama")))
    >>> list(rows.items())
    [(('model.layers.*.self_attn.attention_dropout', 'attention', 'attribute', 0.0), 2)]
    """
    rows: "OrderedDict[tuple, int]" = OrderedDict()
    for site in sites:
        kind = site.kind if site.mask == "element" else f"{site.kind}:{site.mask}"  # a mask kind shows beside it
        key = (_LAYER_INDEX.sub(".*", site.name), site.role or "?", kind, site.p)
        rows[key] = rows.get(key, 0) + 1
    return rows


def run(args) -> int:
    from transformers.utils import logging as hf_logging

    from ..loading import load_model

    hf_logging.set_verbosity_error()  # the head's "newly initialized" report is noise here
    hf_logging.disable_progress_bar()
    spec = DropoutSpec.parse(args.dropout) if args.dropout else None  # validate before the slow load
    try:
        model = load_model(args.model, task=args.task)
    except OSError as err:
        raise FileNotFoundError(f"cannot load model {args.model!r}: {str(err).splitlines()[0]}") from None
    before = inspect_dropout(model)
    after = None
    if spec is not None:
        report = apply_dropout(model, spec, warn_missing=False)
        if report.missing_roles:  # said here, in the command's words, rather than as a Python warning
            print(f"dropout-tune inspect: warning: {args.model} has no {' or '.join(report.missing_roles)} dropout "
                  f"(roles it has: {', '.join(sorted({s.role for s in before if s.role})) or 'none'}); "
                  f"{', '.join(report.missing_roles)} ignored", file=sys.stderr)
        after = inspect_dropout(model)
        before = line_up(before, after)  # sites the patch added (injected) get a row, so before and after line up
    depth = inspect_stochastic_depth(model)
    if args.json:
        print(json.dumps(_as_json(model, before, after, depth), indent=2))
    else:
        print(_table(model, before, after, depth))
    return 0


def _as_json(model, before, after, depth) -> dict:
    sites = []
    for i, site in enumerate(before):
        row = {"name": site.name, "role": site.role, "kind": site.kind, "mask": site.mask, "p": site.p,
               "owner_class": site.owner_class}
        if after is not None:
            row["p_after"] = after[i].p
            row["kind_after"] = after[i].kind
            row["mask_after"] = after[i].mask
        sites.append(row)
    return {"model_type": model.config.model_type, "sites": sites, "roles": _role_summary(after or before),
            "stochastic_depth": [{"name": s.name, "p": s.p} for s in depth]}


def _role_summary(sites: list[DropoutSite]) -> dict:
    summary: dict = {}
    for site in sites:
        row = summary.setdefault(site.role or "unclassified", {"sites": 0, "rates": set()})
        row["sites"] += 1
        row["rates"].add(site.p)
    return {role: {"sites": r["sites"], "rates": sorted(r["rates"])} for role, r in summary.items()}


def _table(model, before, after, depth) -> str:
    rows = collapse(before)
    names = [f"{name} ×{n}" if n > 1 else name for (name, *_), n in rows.items()]
    width = max([len(n) for n in names] + [4])
    lines = [f"{model.config.model_type} ({type(model).__name__}): {len(before)} dropout sites",
             f"{'site':<{width}}  {'role':<10}  {'kind':<11}  p"]
    after_rows = list(collapse(after).keys()) if after is not None else None
    for i, (label, (_, role, kind, p)) in enumerate(zip(names, rows)):
        rate = f"{p:g}"
        if after_rows is not None:
            new_kind, new_p = after_rows[i][2], after_rows[i][3]
            rate = f"{p:g} -> {new_p:g}" + (f" ({kind} -> {new_kind})" if new_kind != kind else "")
        lines.append(f"{label:<{width}}  {role:<10}  {kind:<11}  {rate}")
    lines.append("")
    lines.append("per role: " + "; ".join(
        f"{role} {r['sites']} sites p={'/'.join(f'{x:g}' for x in r['rates'])}"
        for role, r in _role_summary(after or before).items()))
    if depth:
        lines.append("stochastic depth (not dropout, left alone): " + ", ".join(f"{s.name}={s.p:g}" for s in depth))
    return "\n".join(lines)
