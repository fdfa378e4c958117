"""The schedule callback in real Trainer runs (applied rates, logs, exact resume) and the plain-loop scheduler."""

import warnings

import pytest
import torch
from transformers import Trainer, TrainingArguments

import dropout_tune.callbacks as callbacks_module
from dropout_tune.callbacks import DropoutScheduleCallback, DropoutScheduler
from dropout_tune.patching import config_overrides, inspect_dropout
from dropout_tune.schedules import ScheduleSet
from dropout_tune.testing import tiny_inputs, tiny_model

torch.set_num_threads(1)

TOTAL_STEPS = 8
# Changes during training in every way: a linear ramp, a late switch-on, an early cutoff, a constant.
SCHEDULE = ScheduleSet.from_dict({
    "embedding": {"shape": "linear", "start": 0.2, "end": 0.0},
    "attention": {"shape": "late", "p": 0.15, "start": 0.5},
    "hidden": {"shape": "early", "p": 0.1, "until": 0.25},
    "classifier": 0.05,
})


def synthetic_dataset(model, n=12):
    inputs = tiny_inputs(model, batch_size=n, seq_len=8, seed=1)
    labels = torch.arange(n) % model.config.num_labels
    return [{"input_ids": inputs["input_ids"][i], "attention_mask": inputs["attention_mask"][i],
             "labels": labels[i]} for i in range(n)]


def make_trainer(model, output_dir, callbacks, **overrides):
    kwargs = dict(output_dir=str(output_dir), use_cpu=True, report_to=[], max_steps=TOTAL_STEPS,
                  per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, save_strategy="no",
                  disable_tqdm=True, seed=0, dataloader_num_workers=0)
    kwargs.update(overrides)
    return Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=synthetic_dataset(model),
                   callbacks=callbacks)


def record_forward_rates(model):
    """Every training forward pass: {site name: (role, p)} as set at that moment."""
    records = []

    def hook(module, args, kwargs):
        if module.training:
            records.append({site.name: (site.role, site.p) for site in inspect_dropout(module)})

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return records


def assert_sites_follow_schedule(records, first_step, accumulation=1):
    assert records, "no training forward pass was recorded"
    for i, sites in enumerate(records):
        step = first_step + i // accumulation
        expected = SCHEDULE.rates_at(step, TOTAL_STEPS)
        scheduled = {name: p for name, (role, p) in sites.items() if role in expected}
        assert scheduled, "the model has no sites of the scheduled roles"
        for name, (role, p) in sites.items():
            if role in expected:
                assert p == expected[role], f"step {step}: {name} ({role}) has p={p}, schedule says {expected[role]}"


def test_every_site_follows_the_schedule_at_every_step_with_gradient_accumulation(tmp_path):
    model = tiny_model("bert")
    records = record_forward_rates(model)
    callback = DropoutScheduleCallback(SCHEDULE)
    trainer = make_trainer(model, tmp_path, [callback], gradient_accumulation_steps=2)
    trainer.train()
    assert len(records) == TOTAL_STEPS * 2  # two micro-batches per optimizer step
    assert_sites_follow_schedule(records, first_step=0, accumulation=2)
    # Every shape really moved: the recorded hidden rates include the early value and 0.
    hidden_rates = {p for sites in records for role, p in sites.values() if role == "hidden"}
    assert hidden_rates == {0.1, 0.0}
    # Roles outside the schedule (activation has no sites in BERT) and unscheduled sites are left alone.
    assert callback.last_rates == SCHEDULE.rates_at(TOTAL_STEPS - 1, TOTAL_STEPS)


def test_logs_carry_the_rate_of_the_step_just_taken(tmp_path):
    model = tiny_model("bert")
    trainer = make_trainer(model, tmp_path, [DropoutScheduleCallback(SCHEDULE)])
    trainer.train()
    step_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in step_logs] == list(range(1, TOTAL_STEPS + 1))
    for entry in step_logs:
        expected = SCHEDULE.rates_at(entry["step"] - 1, TOTAL_STEPS)
        assert {key: value for key, value in entry.items() if key.startswith("dropout/")} == {
            f"dropout/{role}": p for role, p in expected.items()}
    summary = trainer.state.log_history[-1]
    assert "train_runtime" in summary and not any(key.startswith("dropout/") for key in summary)


def test_model_state_changes_only_when_a_rate_changes(tmp_path, monkeypatch):
    calls = []
    real_apply = callbacks_module.apply_dropout

    def counting_apply(model, spec, **kwargs):
        calls.append(dict(spec.items()))
        return real_apply(model, spec, **kwargs)

    monkeypatch.setattr(callbacks_module, "apply_dropout", counting_apply)
    schedule = {"hidden": {"shape": "off_after", "p": 0.1, "at": 0.5}, "attention": 0.1}
    trainer = make_trainer(tiny_model("bert"), tmp_path, [DropoutScheduleCallback(schedule)])
    trainer.train()
    assert calls == [{"attention": 0.1, "hidden": 0.1}, {"hidden": 0.0}]


def train_and_record(output_dir, resume_from=None, **overrides):
    model = tiny_model("bert")
    records = record_forward_rates(model)
    trainer = make_trainer(model, output_dir, [DropoutScheduleCallback(SCHEDULE)], **overrides)
    trainer.train(resume_from_checkpoint=resume_from)
    return model, records


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    # 12 examples, batch 2: 6 steps per epoch, so resuming at step 4 lands mid-epoch and then crosses an epoch.
    straight_dir = tmp_path / "straight"
    straight, straight_records = train_and_record(straight_dir, save_strategy="steps", save_steps=4)
    checkpoint = straight_dir / "checkpoint-4"
    assert checkpoint.is_dir()
    resumed, resumed_records = train_and_record(tmp_path / "resumed", resume_from=str(checkpoint),
                                                save_strategy="no")
    assert len(straight_records) == TOTAL_STEPS and len(resumed_records) == TOTAL_STEPS - 4
    assert resumed_records == straight_records[4:]
    assert_sites_follow_schedule(resumed_records, first_step=4)
    straight_state, resumed_state = straight.state_dict(), resumed.state_dict()
    assert straight_state.keys() == resumed_state.keys()
    for name, tensor in straight_state.items():
        assert torch.equal(tensor, resumed_state[name]), f"{name} differs after resume"
    # The check has teeth: a run with another schedule ends elsewhere.
    other = tiny_model("bert")
    make_trainer(other, tmp_path / "other", [DropoutScheduleCallback("hidden=0.1")]).train()
    assert not all(torch.equal(t, other.state_dict()[n]) for n, t in straight_state.items())


def test_attach_puts_the_callback_first_so_reporters_see_the_rates(tmp_path):
    trainer = make_trainer(tiny_model("bert"), tmp_path, None)
    callback = DropoutScheduleCallback(SCHEDULE).attach(trainer)
    assert trainer.callback_handler.callbacks[0] is callback
    callback.attach(trainer)
    assert trainer.callback_handler.callbacks.count(callback) == 1


def test_callback_warns_once_about_scheduled_roles_the_model_lacks(tmp_path):
    trainer = make_trainer(tiny_model("bert"), tmp_path, [DropoutScheduleCallback("lora=late:0.1:0.5")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = [str(w.message) for w in caught if "dropout schedule" in str(w.message)]
    assert messages == ["dropout schedule: the model has no dropout sites for role(s) lora; their schedule has no "
                        "effect"]
    # Roles that come only from "all" are not warned about: most models have no LoRA sites.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DropoutScheduler(tiny_model("bert"), "all=0.1", total_steps=2)


# ---- zero rates cost nothing; placeholders switch on ----------------------------------------------------------


def test_rates_at_zero_draw_no_random_numbers_and_match_eval():
    model = tiny_model("bert", attn_implementation="sdpa")
    DropoutScheduler(model, "all=off_after:0.1:at=0.5", total_steps=2).step()
    model.train()
    inputs = tiny_inputs(model)
    rng = torch.get_rng_state()
    train_logits = model(**inputs).logits
    assert torch.equal(rng, torch.get_rng_state())  # no dropout mask was drawn
    assert torch.equal(train_logits, model.eval()(**inputs).logits)


def test_a_late_schedule_switches_on_placeholder_sites_of_a_model_built_at_zero():
    model = tiny_model("modernbert", **config_overrides("modernbert", 0.0)).train()
    placeholders = [s.name for s in inspect_dropout(model) if s.kind == "placeholder" and s.role == "hidden"]
    assert placeholders, "tiny ModernBERT built at 0 should have placeholder hidden sites"
    inputs = tiny_inputs(model)
    scheduler = DropoutScheduler(model, "hidden=late:0.3:start=0.5", total_steps=4)
    scheduler.step()
    assert torch.equal(model(**inputs).logits, model(**inputs).logits)  # still off: deterministic
    scheduler.step()  # step 2 of 4: progress 0.5, on
    sites = {s.name: s for s in inspect_dropout(model)}
    assert all(sites[name].kind == "module" and sites[name].p == 0.3 for name in placeholders)
    assert not torch.equal(model(**inputs).logits, model(**inputs).logits)  # now dropping


# ---- the plain-loop scheduler ----------------------------------------------------------------------------------


def test_scheduler_steps_like_the_trainer_callback():
    model = tiny_model("bert")
    scheduler = DropoutScheduler(model, SCHEDULE, total_steps=TOTAL_STEPS)
    seen = []
    for _ in range(TOTAL_STEPS):
        seen.append({site.name: (site.role, site.p) for site in inspect_dropout(model)})
        scheduler.step()
    assert_sites_follow_schedule(seen, first_step=0)
    assert scheduler.last_step == TOTAL_STEPS
    assert scheduler.last_rates == SCHEDULE.rates(1.0)  # past the end: the rate at progress 1


def test_scheduler_state_dict_restores_the_step_on_a_fresh_model():
    scheduler = DropoutScheduler(tiny_model("bert"), SCHEDULE, TOTAL_STEPS)
    for _ in range(5):
        scheduler.step()
    state = scheduler.state_dict()
    assert state == {"step": 5, "total_steps": TOTAL_STEPS, "schedule": SCHEDULE.to_dict()}
    fresh_model = tiny_model("bert")
    restored = DropoutScheduler(fresh_model, SCHEDULE, TOTAL_STEPS)
    restored.load_state_dict(state)
    assert restored.last_step == 5 and restored.last_rates == SCHEDULE.rates_at(5, TOTAL_STEPS)
    assert_sites_follow_schedule([{s.name: (s.role, s.p) for s in inspect_dropout(fresh_model)}], first_step=5)


def test_scheduler_warns_when_a_checkpoint_has_another_schedule_or_length():
    state = DropoutScheduler(tiny_model("bert"), SCHEDULE, TOTAL_STEPS).state_dict()
    other = DropoutScheduler(tiny_model("bert"), "hidden=0.1", 2 * TOTAL_STEPS)
    with pytest.warns(UserWarning) as caught:
        other.load_state_dict(state)
    messages = " ".join(str(w.message) for w in caught)
    assert "total_steps=8, now 16" in messages and "schedule" in messages
    with pytest.raises(ValueError, match="state: missing 'step'"):
        other.load_state_dict({})


@pytest.mark.parametrize("total_steps, message", [(0, "total_steps: 0 must be a positive integer"),
                                                  (8.0, "total_steps: 8.0 must be a positive integer")])
def test_scheduler_rejects_bad_lengths(total_steps, message):
    with pytest.raises(ValueError, match=message):
        DropoutScheduler(tiny_model("bert"), SCHEDULE, total_steps)


def test_scheduler_checkpoints_with_accelerate(tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    try:
        accelerator = Accelerator(cpu=True)
        scheduler = DropoutScheduler(tiny_model("bert"), SCHEDULE, TOTAL_STEPS)
        accelerator.register_for_checkpointing(scheduler)
        for _ in range(3):
            scheduler.step()
        accelerator.save_state(str(tmp_path / "state"))
        for _ in range(2):
            scheduler.step()
        accelerator.load_state(str(tmp_path / "state"))
        assert scheduler.last_step == 3 and scheduler.last_rates == SCHEDULE.rates_at(3, TOTAL_STEPS)
    finally:  # do not leak accelerate's process-wide state into other tests
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def test_logs_only_roles_the_model_has():
    from dropout_tune.callbacks import _RateApplier
    from dropout_tune.testing import tiny_model

    applier = _RateApplier("all=0.2")
    applier.apply(tiny_model("bert"), 0, 10)
    assert set(applier.log_entries()) == {"dropout/embedding", "dropout/attention", "dropout/hidden",
                                          "dropout/classifier"}
