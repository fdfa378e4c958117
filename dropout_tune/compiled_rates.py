"""Dropout rates that ``torch.compile`` reads as tensors, so a schedule changes them without recompiling.

Dynamo specializes a graph on every Python float it reads: ``nn.Dropout.p``, a Llama attention's
``attention_dropout``, BERT attention reading ``self.dropout.p`` and passing it to SDPA. Each new rate of a schedule
would be a new graph, until ``recompile_limit`` (8) stops compiling altogether. ``apply_dropout`` therefore makes each
site it changes *compile-ready* (:func:`make_compile_ready`), which changes nothing in eager mode:

* the module holding the rate gets a subclass that keeps its class name, module and behaviour. The rate attribute
  (``p`` of an ``nn.Dropout``, a float attribute of an attention or layer module) becomes a property: in eager mode it
  reads the very float stored in the instance ``__dict__`` (eager outputs stay bit for bit what load-time
  configuration gives); while dynamo traces it reads a 0-dim tensor holding the same rate (a non-persistent buffer,
  moved by ``.to()``, never saved), or ``0.0`` when no compile-ready site of the model has a positive rate;
* a compile-ready ``nn.Dropout`` applies that tensor rate itself (:func:`dropout_at_rate`). Any other compile-ready
  module runs its forward, while traced, inside :class:`TensorRateMode`, a ``TorchFunctionMode`` that rewrites the
  ``F.dropout`` and ``F.scaled_dot_product_attention`` calls that got a tensor rate into the same computation with
  a tensor rate. Calls that got a float are left alone;
* graphs guard on one bool per model, :attr:`RateBank.live`, instead of on rates: a schedule compiles once while
  some rate is positive and once more when all reach 0 (then the fast path runs: no masks, fused SDPA).

Under compile dropout is equal in distribution to eager dropout, not bitwise: the random masks come from another
generator. Attention kernels other than eager and SDPA (flash, flex) take a float rate, so their sites keep reading
the float (and recompile when it changes).

A new kind of site plugs in with an entry in :data:`PREPARE_BY_KIND` that calls :func:`make_compile_ready` on the
module holding the rate: an ``nn.Dropout`` called as a module needs nothing else; a float that the holder's forward
passes to ``F.dropout`` or SDPA is covered by the mode.

Example:
    >>> import torch
    >>> drop = make_compile_ready(torch.nn.Dropout(0.1), ("p",), RateBank())
    >>> type(drop).__name__, drop.p, drop
    ('Dropout', 0.1, Dropout(p=0.1, inplace=False))
    >>> drop.p = 0.25; float(drop._dropout_tune_rate_p)
    0.25
"""

from __future__ import annotations

import copyreg
import functools
import math
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .masks import ELEMENT, MaskedDropout, drop

__all__ = ["PREPARE_BY_KIND", "RateBank", "TensorRateMode", "bank_of", "dropout_at_rate", "is_compile_ready",
           "make_compile_ready", "original_class", "prepare_site", "refresh_bank"]

#: Attention implementations whose functions call ``F.dropout`` / SDPA, which :class:`TensorRateMode` rewrites.
TENSOR_RATE_ATTENTION = (None, "eager", "sdpa")

_BANK = "_dropout_tune_bank"
_BASE = "_dropout_tune_base"
_ATTRS = "_dropout_tune_attrs"


class RateBank:
    """What the compiled graphs of one model guard on instead of its rates: is any compile-ready site live?

    Setting a positive rate switches ``live`` on at once; ``apply_dropout`` and ``restore_dropout`` switch it off
    when they leave every compile-ready site at 0. ``live`` on with all rates 0 is still exact (masks keep
    everything), only slower.
    """

    def __init__(self) -> None:
        self.live = False

    def __repr__(self) -> str:
        return f"RateBank(live={self.live})"


def _buffer_name(attr: str) -> str:
    return f"_dropout_tune_rate_{attr}"


def _takes_tensor_rate(module: nn.Module) -> bool:
    """Can whatever reads this module's rate take a tensor? Not when the attention kernel wants a float."""
    config = getattr(module, "_dropout_tune_config", None)
    return getattr(config, "_attn_implementation", None) in TENSOR_RATE_ATTENTION


def _compiled_rate(module: nn.Module, attr: str) -> Any:
    """The rate as compiled code reads it: the site's tensor, or ``0.0`` (no dropout at all) when no compile-ready
    site of the model is live."""
    return getattr(module, _buffer_name(attr)) if getattr(module, _BANK).live else 0.0


def _in_tensor_rate_mode() -> bool:
    """Is a :class:`TensorRateMode` active (dynamo reads the mode stack while tracing)?"""
    return any(isinstance(torch._C._get_function_stack_at(i), TensorRateMode)
               for i in range(torch._C._len_torch_function_stack()))


def _rate_property(attr: str) -> property:
    def read(self):
        # a tensor only where TensorRateMode will rewrite the call that gets it
        if torch.compiler.is_compiling() and _takes_tensor_rate(self) and _in_tensor_rate_mode():
            return _compiled_rate(self, attr)
        return self.__dict__[attr]

    def write(self, value):
        self.__dict__[attr] = value
        _store(self, attr, value)

    return property(read, write, doc=f"The {attr} rate: a float in eager mode, a 0-dim tensor while compiled.")


def _store(module: nn.Module, attr: str, value: Any) -> None:
    rate = getattr(module, _buffer_name(attr), None)
    if rate is None:  # the base class's __init__ sets the rate before make_compile_ready registers its buffer
        return
    with torch.no_grad():
        rate.fill_(float(value))
    if value > 0:
        getattr(module, _BANK).live = True


# ---- dropout and attention with a tensor rate -----------------------------------------------------------------------


def _tensor_dropout(x: torch.Tensor, rate: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``F.dropout(x, rate, training=True)`` with ``rate`` a 0-dim tensor: keep with probability 1 - rate, scale
    by 1 / (1 - rate); rate 1 gives zeros like ``F.dropout``."""
    keep = torch.rand_like(x, dtype=torch.float32) >= rate
    scale = torch.where(rate < 1, 1 / (1 - rate), torch.zeros_like(rate))
    noise = keep.to(x.dtype) * scale.to(x.dtype)
    return x.mul_(noise) if inplace else x * noise


def dropout_at_rate(x: torch.Tensor, p: Any, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """``F.dropout`` that also takes the rate as a 0-dim tensor (what a compile-ready rate reads as while traced).

    >>> x = torch.ones(4)
    >>> torch.equal(dropout_at_rate(x, torch.tensor(0.0)), x), torch.equal(dropout_at_rate(x, 0.5, False), x)
    (True, True)
    """
    if not isinstance(p, torch.Tensor):
        return F.dropout(x, p, training, inplace)
    return _tensor_dropout(x, p, inplace) if training else x


def _attention_with_tensor_dropout(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                   enable_gqa=False):
    """``F.scaled_dot_product_attention`` written out (as in its documentation) so that ``dropout_p`` can be a
    tensor; the fused kernels take only a float."""
    q_len, k_len = query.size(-2), key.size(-2)
    scale = 1 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa:
        repeats = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(repeats, -3), value.repeat_interleave(repeats, -3)
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    # rows masked everywhere give 0 (as SDPA does), not NaN
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return _tensor_dropout(probs, dropout_p) @ value


_DROPOUT_PARAMS = ("input", "p", "training", "inplace")
_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


class TensorRateMode(TorchFunctionMode):
    """Rewrites ``F.dropout`` and ``F.scaled_dot_product_attention`` calls whose rate is a tensor; passes every
    other call through. Entered only while dynamo traces a compile-ready module's forward (it is erased from the
    graph), never in eager mode."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if func is F.dropout:
            bound = _bind(_DROPOUT_PARAMS, args, kwargs)
            if isinstance(bound.get("p"), torch.Tensor):
                return dropout_at_rate(bound["input"], bound["p"], bound.get("training", True),
                                       bound.get("inplace", False))
        elif func is F.scaled_dot_product_attention:
            bound = _bind(_SDPA_PARAMS, args, kwargs)
            if isinstance(bound.get("dropout_p"), torch.Tensor):
                return _attention_with_tensor_dropout(**bound)
        return func(*args, **kwargs)


# ---- compile-ready classes ------------------------------------------------------------------------------------------


def _ready_dropout_forward(self, input: torch.Tensor) -> torch.Tensor:
    # a masked module (masks.MaskedDropout, HeadDropout) applies its own mask at the rate; "element" with a float
    # rate is F.dropout itself
    rate = _compiled_rate(self, "p") if torch.compiler.is_compiling() else self.__dict__["p"]
    if isinstance(self, MaskedDropout):
        return self.dropped(input, rate)
    return drop(input, rate, self.training, ELEMENT, self.inplace)


def _forward_in_mode(forward: Callable) -> Callable:
    @functools.wraps(forward)  # keeps the signature and __wrapped__ (source inspection reads the original)
    def wrapper(self, *args, **kwargs):
        # Inside an activation-checkpointed layer, entering the mode is a side effect dynamo refuses unless
        # torch._dynamo.config.skip_fwd_side_effects_in_bwd_under_checkpoint is True (see docs/compile.md).
        if torch.compiler.is_compiling() and not _in_tensor_rate_mode():
            with TensorRateMode():
                return forward(self, *args, **kwargs)
        return forward(self, *args, **kwargs)

    return wrapper


def _new_instance(cls: type) -> Any:
    return cls.__new__(cls)


def _reduce_as_base(self, protocol):
    """Pickle and deepcopy give back the original class (a dynamically made class is not importable); the
    instance keeps its rates, so the copy behaves the same and the next ``apply_dropout`` makes it ready again."""
    constructor, args, *rest = object.__reduce_ex__(self, max(protocol, 2))
    if constructor is copyreg.__newobj__ and args and args[0] is type(self):
        constructor, args = _new_instance, (getattr(type(self), _BASE),) + tuple(args[1:])
    return (constructor, args, *rest)


def _plain_dropout(cls: type) -> bool:
    """nn.Dropout, or a subclass that keeps its forward or :class:`~dropout_tune.masks.MaskedDropout`'s (one masked
    dropout of the input; injection's InjectedDropout is one)."""
    return issubclass(cls, nn.Dropout) and cls.forward in (nn.Dropout.forward, MaskedDropout.forward)


@functools.lru_cache(maxsize=None)
def _ready_class(base: type, attrs: frozenset) -> type:
    namespace: dict[str, Any] = {attr: _rate_property(attr) for attr in attrs}
    namespace.update({
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,  # transformers keys some per-class registries on str(cls)
        "__doc__": base.__doc__,
        "__reduce_ex__": _reduce_as_base,
        _BASE: base,
        _ATTRS: attrs,
    })
    if _plain_dropout(base):
        namespace["forward"] = _ready_dropout_forward
    else:
        namespace["forward"] = _forward_in_mode(base.forward)
    return type(base.__name__, (base,), namespace)


def original_class(module: nn.Module) -> type:
    """The class ``module`` had before :func:`make_compile_ready`."""
    return getattr(type(module), _BASE, type(module))


def is_compile_ready(module: nn.Module, attr: Optional[str]) -> bool:
    """Is the rate ``attr`` of ``module`` compile-ready (``attr=None``: has ``module`` a compile-ready class)?"""
    attrs = getattr(type(module), _ATTRS, None)
    return attrs is not None and (attr is None or attr in attrs)


def _device_of(module: nn.Module, default: Optional[torch.device]) -> Optional[torch.device]:
    for tensor in module.parameters(recurse=False):
        return tensor.device
    return default


def make_compile_ready(module: nn.Module, attrs: Iterable[str], bank: RateBank, config: Any = None,
                       device: Optional[torch.device] = None) -> nn.Module:
    """Make the float rates ``attrs`` of ``module`` compile-ready (see the module docstring); returns ``module``.

    ``bank`` is the model's :class:`RateBank`; ``config`` the config whose attention implementation reads these
    rates (``module.config`` by default); ``device`` where the rate tensors go when ``module`` has no parameters of
    its own. Calling it again adds attributes or rebinds the bank; it never changes a rate.
    """
    attrs = frozenset(attrs) | getattr(type(module), _ATTRS, frozenset())
    base = original_class(module)
    if not _plain_dropout(base) and isinstance(module, nn.modules.dropout._DropoutNd):
        raise TypeError(f"{base.__name__}: only nn.Dropout can be made compile-ready")
    if type(module) is not _ready_class(base, attrs):
        module.__class__ = _ready_class(base, attrs)
    if getattr(module, _BANK, None) is not bank:
        module.__dict__[_BANK] = bank
    module.__dict__["_dropout_tune_config"] = config if config is not None else getattr(module, "config", None)
    device = _device_of(module, device)
    for attr in attrs:
        value = module.__dict__[attr]
        name = _buffer_name(attr)
        if name not in module._buffers:
            with torch.inference_mode(False):
                module.register_buffer(name, torch.tensor(float(value), device=device), persistent=False)
        if value > 0:
            bank.live = True
    return module


# ---- sites, by kind ----------------------------------------------------------------------------------------------


def bank_of(model: nn.Module) -> RateBank:
    """The model's :class:`RateBank`, made on first use (an instance attribute: pickled and copied with the model)."""
    bank = model.__dict__.get(_BANK)
    if bank is None:
        bank = model.__dict__[_BANK] = RateBank()
    return bank


def has_bank(model: nn.Module) -> bool:
    return _BANK in model.__dict__


def model_device(model: nn.Module) -> Optional[torch.device]:
    """Where the rate tensors of modules without parameters of their own go: the model's first parameter's device."""
    for tensor in model.parameters():
        return tensor.device
    return None


def _prepare_attribute(owner: nn.Module, attr: str, bank: RateBank, device: Optional[torch.device]) -> None:
    make_compile_ready(owner, (attr,), bank, device=device)


def _prepare_module(owner: nn.Module, attr: str, bank: RateBank, device: Optional[torch.device]) -> None:
    module = getattr(owner, attr)
    if _plain_dropout(original_class(module)):  # Dropout2d, AlphaDropout... keep their float
        make_compile_ready(module, ("p",), bank, device=device)


def _prepare_module_p(owner: nn.Module, attr: str, bank: RateBank, device: Optional[torch.device]) -> None:
    module = getattr(owner, attr)
    if _plain_dropout(original_class(module)):
        # the owner's attention code reads .p: a tensor goes there only for kernels that take it, and only inside
        # the owner's forward, which runs in the mode that rewrites the call
        make_compile_ready(module, ("p",), bank, config=getattr(owner, "config", None), device=device)
        make_compile_ready(owner, (), bank, device=device)


def _prepare_placeholder(owner: nn.Module, attr: str, bank: RateBank, device: Optional[torch.device]) -> None:
    """Nothing yet: ``apply_dropout`` puts a compile-ready ``nn.Dropout`` there when the rate turns positive."""


#: site kind -> how its site is made compile-ready; a kind missing here keeps its float (and recompiles).
PREPARE_BY_KIND: dict[str, Callable[[nn.Module, str, RateBank, Optional[torch.device]], None]] = {
    "module": _prepare_module,
    "module_p": _prepare_module_p,
    "attribute": _prepare_attribute,
    "placeholder": _prepare_placeholder,
    "injected": _prepare_module,  # an nn.Dropout subclass that injection's hooks call as a module
}


def prepare_site(kind: str, owner: nn.Module, attr: str, bank: RateBank, device: Optional[torch.device]) -> None:
    """Make the site ``owner.attr`` of ``kind`` compile-ready (idempotent)."""
    prepare = PREPARE_BY_KIND.get(kind)
    if prepare is not None:
        prepare(owner, attr, bank, device)


def refresh_bank(bank: RateBank, sites: Iterable[tuple[nn.Module, Any, str]]) -> None:
    """Bind every compile-ready site among ``sites`` (owner, the object holding the rate, its attribute: see
    ``sites.SiteKind.rate_holder``) to ``bank`` and set ``bank.live``: is any of their rates > 0?"""
    live = False
    for owner, holder, rate_attr in sites:
        if is_compile_ready(holder, rate_attr):
            holder.__dict__[_BANK] = bank
            live = live or holder.__dict__[rate_attr] > 0
            if is_compile_ready(owner, None):
                owner.__dict__[_BANK] = bank
    bank.live = live
