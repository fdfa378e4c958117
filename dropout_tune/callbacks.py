"""Apply a :class:`~dropout_tune.schedules.ScheduleSet` during training: a ``Trainer`` callback and a plain-loop
scheduler.

Both set the rate of step ``s`` of ``N`` (``schedule_set.rates_at(s, N)``) before that optimizer step's first
forward pass, and touch the model only for roles whose rate changed since the last application, so a flat stretch
of a schedule costs nothing per step.

Example (a plain loop; the Trainer form is ``Trainer(..., callbacks=[DropoutScheduleCallback(schedule)])``):
    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("bert")
    >>> scheduler = DropoutScheduler(model, "hidden=off_after:0.1:at=0.5", total_steps=4)
    >>> rates = []
    >>> for _ in range(4):
    ...     rates.append(scheduler.last_rates["hidden"])   # forward, backward, optimizer.step() go here
    ...     _ = scheduler.step()
    >>> rates
    [0.1, 0.1, 0.0, 0.0]
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Union

from torch import nn
from transformers import TrainerCallback

from .patching import apply_dropout
from .runtime import unwrap_model
from .schedules import ScheduleSet
from .spec import DropoutSpec

__all__ = ["DropoutScheduleCallback", "DropoutScheduler", "LOG_PREFIX"]

#: Logged rates are ``dropout/<role>``.
LOG_PREFIX = "dropout/"

ScheduleSetLike = Union[ScheduleSet, Mapping[str, Any], str, float]


class _RateApplier:
    """Remembers the rates last applied and applies only the roles that changed."""

    def __init__(self, schedule_set: ScheduleSetLike):
        self.schedule_set = ScheduleSet.coerce(schedule_set)
        self.last_rates: dict[str, float] = {}
        self.absent_roles: frozenset[str] = frozenset()  # scheduled roles the model has no sites for

    def forget(self) -> None:
        """Make the next :meth:`apply` set every role (the model may have been rebuilt or reloaded)."""
        self.last_rates = {}
        self.absent_roles = frozenset()

    def apply(self, model: nn.Module, step: int, total_steps: int) -> dict[str, float]:
        """Set the rates of ``step`` of ``total_steps``; returns the roles that changed."""
        rates = self.schedule_set.rates_at(step, total_steps)
        changed = {role: p for role, p in rates.items() if self.last_rates.get(role) != p}
        if not changed:
            return changed
        first = not self.last_rates
        # write_config=False: a schedule is training-time behaviour. The model's config keeps the rates it was
        # built with, so a checkpoint saved after `off_after` does not reload as a dropout-free model, and roles
        # that share a config key (BERT's hidden/embedding) do not warn at every change.
        # each role's mask and depth come along with its rate (a schedule changes the rate and keeps them)
        report = apply_dropout(unwrap_model(model), self.schedule_set.spec_at_rates(changed), warn_missing=False,
                               write_config=False)
        # Roles that came only from "all" are expected to be missing from some models (lora without PEFT).
        missing = [role for role in report.missing_roles if role in self.schedule_set.explicit_roles]
        if first:
            self.absent_roles = frozenset(report.missing_roles)
            if missing:
                warnings.warn(f"dropout schedule: the model has no dropout sites for role(s) {', '.join(missing)}; "
                              f"their schedule has no effect", stacklevel=3)
        self.last_rates = rates
        return changed

    def log_entries(self) -> dict[str, float]:
        """``dropout/<role>`` for the roles the model has (a schedule for "all" also names lora, activation...)."""
        return {f"{LOG_PREFIX}{role}": p for role, p in self.last_rates.items() if role not in self.absent_roles}


class _FollowsSchedule:
    """What the callback and the plain-loop scheduler share: a :class:`_RateApplier` and read-only views of it."""

    _applier: _RateApplier

    @property
    def schedule_set(self) -> ScheduleSet:
        return self._applier.schedule_set

    @property
    def last_rates(self) -> dict[str, float]:
        """The rates now set on the model: those of the step about to run (empty before the first)."""
        return dict(self._applier.last_rates)


class DropoutScheduleCallback(_FollowsSchedule, TrainerCallback):
    """A ``transformers.TrainerCallback`` that follows ``schedule_set`` over training.

    Rates are applied in ``on_train_begin`` and ``on_step_begin``, which the Trainer calls once per optimizer step
    (before the first micro-batch of a gradient-accumulation group), with progress ``global_step / max_steps``.
    Training logs get ``dropout/<role>``: the rates of the step just taken.

    Resuming is exact without saving any callback state: the rate is a pure function of ``state.global_step``,
    which the Trainer restores from the checkpoint before ``on_train_begin``, so a resumed run applies the same
    rate at every step as an uninterrupted one.

    ``Trainer(callbacks=[cb])`` puts the rates in ``trainer.state.log_history`` and the console log; reporting
    integrations (TensorBoard, W&B, ...) run before user callbacks, so use ``cb.attach(trainer)`` to have them
    see the rates too.
    """

    def __init__(self, schedule_set: ScheduleSetLike):
        self._applier = _RateApplier(schedule_set)

    def attach(self, trainer: Any) -> "DropoutScheduleCallback":
        """Add this callback to ``trainer`` ahead of its other callbacks, so every reporter sees ``dropout/*``."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    def _apply(self, state: Any, model: nn.Module) -> None:
        if model is None:
            raise ValueError("DropoutScheduleCallback: the Trainer passed no model to the callback")
        if state.max_steps <= 0:
            raise ValueError(f"max_steps: {state.max_steps} is not a positive number of steps; a dropout schedule "
                             f"needs to know the length of training")
        self._applier.apply(model, state.global_step, state.max_steps)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._applier.forget()  # a new or resumed run: its model may be freshly built, so set every role
        self._apply(state, model)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._apply(state, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Only training-step logs (they carry the loss or learning rate), not evaluation or end-of-run summaries.
        if logs is None or not self._applier.last_rates or not ("loss" in logs or "learning_rate" in logs):
            return
        entries = self._applier.log_entries()
        logs.update(entries)
        # The Trainer appended these logs to log_history just before calling on_log.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(entries)


class DropoutScheduler(_FollowsSchedule):
    """The plain-loop form, used like a learning-rate scheduler: call ``.step()`` after each optimizer step.

    Construction applies the rates of step 0; ``.step()`` advances one step and applies the next step's rates.
    ``state_dict()`` / ``load_state_dict()`` save and restore the step (so it can be passed to
    ``accelerator.register_for_checkpointing``); loading re-applies the rates of the restored step.

    >>> from dropout_tune.testing import tiny_model
    >>> model = tiny_model("bert")
    >>> scheduler = DropoutScheduler(model, {"attention": {"shape": "linear", "start": 0.2, "end": 0.0}}, 2)
    >>> scheduler.last_rates
    {'attention': 0.2}
    >>> scheduler.step()  # the roles that changed
    {'attention': 0.1}
    >>> scheduler.state_dict()["step"]
    1
    """

    def __init__(self, model: nn.Module, schedule_set: ScheduleSetLike, total_steps: int, last_step: int = 0):
        self.model = model
        self.total_steps = total_steps
        self._applier = _RateApplier(schedule_set)
        self.schedule_set.rates_at(last_step, total_steps)  # validates total_steps and last_step up front
        self._step = last_step
        self._applier.apply(model, self._step, total_steps)

    @property
    def last_step(self) -> int:
        """The step whose rates are set (the number of ``.step()`` calls since step 0)."""
        return self._step

    def step(self) -> dict[str, float]:
        """Advance one optimizer step and apply its rates; returns the roles whose rate changed."""
        self._step += 1
        return self._applier.apply(self.model, self._step, self.total_steps)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "total_steps": self.total_steps, "schedule": self.schedule_set.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step and apply its rates. A different ``total_steps`` or schedule in ``state`` is warned
        about; this scheduler's own are kept (as when training is deliberately extended)."""
        if "step" not in state:
            raise ValueError("state: missing 'step'; expected a DropoutScheduler.state_dict()")
        saved_total, saved_schedule = state.get("total_steps"), state.get("schedule")
        if saved_total is not None and saved_total != self.total_steps:
            warnings.warn(f"DropoutScheduler: checkpoint was made with total_steps={saved_total}, now "
                          f"{self.total_steps}; rates follow the new length", stacklevel=2)
        if saved_schedule is not None and ScheduleSet.from_dict(saved_schedule) != self.schedule_set:
            warnings.warn(f"DropoutScheduler: checkpoint was made with schedule "
                          f"{ScheduleSet.from_dict(saved_schedule).to_string()!r}, now "
                          f"{self.schedule_set.to_string()!r}; rates follow the new schedule", stacklevel=2)
        self._step = int(state["step"])
        self._applier.forget()  # the model may be freshly built: set every role
        self._applier.apply(self.model, self._step, self.total_steps)

    def __repr__(self) -> str:
        return (f"DropoutScheduler({self.schedule_set.to_string()!r}, step={self._step}/{self.total_steps}, "
                f"rates={self._applier.last_rates})")
