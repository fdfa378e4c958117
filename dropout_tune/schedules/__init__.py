"""Dropout schedules: pure functions of training progress ``t`` in [0, 1] to a dropout rate ``p``.

Progress of step ``s`` out of ``N`` optimizer steps is ``t = s / N``: the rate used for the optimizer step that
takes ``global_step`` from ``s`` to ``s + 1``. The first step runs at ``t = 0``, the last at ``t = (N - 1) / N``;
``t = 1`` is the end of training. Steps past ``N`` keep the rate of ``t = 1``.

=============  =========================  ==========================================================
shape          parameters                 p(t)
=============  =========================  ==========================================================
constant       p                          p
linear         start, end                 start·(1 − t) + end·t
cosine         start, end                 end + (start − end)·(1 + cos πt) / 2
off_after      p, at                      p if t < at, else 0
early          p, until, ramp=constant    p if t < until, else 0
early          p, until, ramp=linear      p·(1 − t / until) if t < until, else 0
late           p, start                   0 if t < start, else p
curriculum     p, gamma=10                p·(1 − e^(−γt))  (keep-probability 1 − p(t) decays from 1 to 1 − p)
piecewise      points=[[t0, p0], ...]     linear between points; p0 before t0, pn after tn;
                                          a repeated t is a jump (the later point holds from t on)
=============  =========================  ==========================================================

``early`` and ``late`` follow Liu et al. (ICML 2023, "Dropout Reduces Underfitting"); ``curriculum`` follows
Morerio et al. (ICCV 2017, "Curriculum Dropout"), with γ per unit of training progress.

The package: :mod:`.shapes` holds the shapes (one dataclass each) and :mod:`.sets` reads them from the dict and
compact forms and holds :class:`ScheduleSet`; every name is importable from ``dropout_tune.schedules``.

Cutoffs are half-open: the rate switches *at* the cutoff, so ``off_after(0.1, at=0.5)`` over 10 steps uses 0.1
for steps 0-4 and 0 for steps 5-9.

Example:
    >>> sched = ScheduleSet.parse("hidden=early:0.1:until=0.3,attention=0.1")
    >>> sched.rates_at(0, 10)
    {'attention': 0.1, 'hidden': 0.1}
    >>> sched.rates_at(3, 10)
    {'attention': 0.1, 'hidden': 0.0}
    >>> sched.to_dict()["hidden"]
    {'shape': 'early', 'p': 0.1, 'until': 0.3, 'ramp': 'constant'}
    >>> ScheduleSet.from_dict(sched.to_dict()) == sched
    True
    >>> ScheduleSet.parse("hidden=early:0.1:until=1.5")
    Traceback (most recent call last):
    ...
    ValueError: hidden.until: 1.5 is outside [0, 1]
"""

from .sets import _SHAPE_PARAMETERS, ScheduleLike, ScheduleSet, schedule_from_dict, schedule_from_string
from .shapes import (
    Constant,
    Cosine,
    Curriculum,
    Early,
    Late,
    Linear,
    OffAfter,
    Piecewise,
    Ramp,
    Schedule,
    Shape,
    constant,
    cosine,
    curriculum,
    early,
    late,
    linear,
    off_after,
    piecewise,
    progress_of,
)

__all__ = [
    "Shape", "Ramp", "Schedule", "Constant", "Linear", "Cosine", "OffAfter", "Early", "Late", "Curriculum",
    "Piecewise", "ScheduleSet", "progress_of", "constant", "linear", "cosine", "off_after", "early", "late",
    "curriculum", "piecewise",
]
