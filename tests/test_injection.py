"""Injected dropout sites in decoder families without them: exact against a written-in reference, reversible,
persisted, and treated like any other site by schedules and MC dropout."""

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropout_tune import apply_dropout, inspect_dropout, load_model, restore_dropout
from dropout_tune.callbacks import DropoutScheduler
from dropout_tune.injection import CONFIG_KEY, InjectedDropout, injectable_roles, injected_rates
from dropout_tune.mc import mc_dropout
from dropout_tune.registry import FAMILY_DROPOUT
from dropout_tune.testing import tiny_inputs, tiny_model

INJECTABLE = [name for name, family in FAMILY_DROPOUT.items() if family.injection is not None]
# distinct rates per role, so a site applied at the wrong place or in the wrong order changes the masks
RATES = {"embedding": 0.15, "hidden": 0.2, "activation": 0.25}


def decoder_roles(model):
    """The roles injected where a decoder has no sites (head, DropHead, is injected in every family: tested apart)."""
    return [role for role in injectable_roles(model) if role != "head"]


def test_the_issue_families_are_injectable():
    assert {"llama", "mistral", "qwen2", "gemma", "qwen3", "gemma2", "phi3"} <= set(INJECTABLE)


# ---- the reference: the same model with F.dropout written into its forward code --------------------------------


def _gated_mlp(self, x):
    return self.down_proj(F.dropout(self.act_fn(self.gate_proj(x)) * self.up_proj(x), RATES["activation"],
                                    self.training))


def _phi3_mlp(self, hidden_states):
    gate, up_states = self.gate_up_proj(hidden_states).chunk(2, dim=-1)
    return self.down_proj(F.dropout(up_states * self.activation_fn(gate), RATES["activation"], self.training))


def _llama_layer(self, hidden_states, **kwargs):
    residual = hidden_states
    hidden_states, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
    hidden_states = residual + F.dropout(hidden_states, RATES["hidden"], self.training)
    residual = hidden_states
    hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
    return residual + F.dropout(hidden_states, RATES["hidden"], self.training)


def _gemma2_layer(self, hidden_states, **kwargs):
    residual = hidden_states
    hidden_states, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
    hidden_states = residual + F.dropout(self.post_attention_layernorm(hidden_states), RATES["hidden"],
                                         self.training)
    residual = hidden_states
    hidden_states = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(hidden_states)))
    return residual + F.dropout(hidden_states, RATES["hidden"], self.training)


def _embedding(self, input_ids):
    return F.dropout(super(type(self), self).forward(input_ids), RATES["embedding"], self.training)


def _subclass(module: nn.Module, forward) -> None:
    module.__class__ = type(f"Reference{type(module).__name__}", (type(module),), {"forward": forward})


def _reference(model_type: str) -> nn.Module:
    """``tiny_model(model_type)`` whose forward code calls F.dropout at the injected places (Phi-3's native
    residual dropout is built from its config instead)."""
    model = tiny_model(model_type, **({"resid_pdrop": RATES["hidden"]} if model_type == "phi3" else {}))
    base = model.model
    _subclass(base.embed_tokens, _embedding)
    for layer in base.layers:
        _subclass(layer.mlp, _phi3_mlp if model_type == "phi3" else _gated_mlp)
        if model_type != "phi3":
            _subclass(layer, _gemma2_layer if model_type == "gemma2" else _llama_layer)
    return model


def _logits(model, inputs, train: bool, seed: int = 1234):
    model.train(train)
    torch.manual_seed(seed)
    return model(**inputs).logits


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _structure(model):
    return repr(model), [name for name, _ in model.named_modules()], _hooks(model), model.config.to_json_string()


@pytest.mark.parametrize("model_type", INJECTABLE)
def test_train_forward_equals_written_in_reference_bit_for_bit(model_type):
    reference = _reference(model_type)
    model = tiny_model(model_type)
    model.load_state_dict(reference.state_dict())
    inputs = tiny_inputs(model)
    plain_train, plain_eval = _logits(model, inputs, True).detach(), _logits(model, inputs, False).detach()
    before = _structure(model)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "nothing to set" warning: the roles are injected
        report = apply_dropout(model, RATES)
    injected = {s.role for s in inspect_dropout(model) if s.kind == "injected"}
    assert injected == set(decoder_roles(model))
    assert all(s.p == RATES[s.role] for s in inspect_dropout(model) if s.role in RATES)

    out, ref = _logits(model, inputs, True), _logits(reference, inputs, True)
    assert torch.equal(out, ref)
    assert not torch.equal(out.detach(), plain_train), "the injected sites changed nothing"
    out.sum().backward()
    ref.sum().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert torch.equal(_logits(model, inputs, False), plain_eval), "eval mode must be untouched"

    restore_dropout(model, report)
    assert _structure(model) == before, "restore must remove every injected module, hook and config key"
    assert torch.equal(_logits(model, inputs, True).detach(), plain_train)


@pytest.mark.parametrize("model_type", INJECTABLE)
def test_save_pretrained_records_rates_and_load_model_reinjects_them(model_type, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tiny_model(model_type)
    apply_dropout(model, RATES)
    model.save_pretrained(tmp_path)
    expected = {role: RATES[role] for role in decoder_roles(model)}
    assert json.loads((tmp_path / "config.json").read_text())[CONFIG_KEY] == expected

    loaded = load_model(str(tmp_path), attn_implementation="eager")  # as tiny_model builds it
    assert injected_rates(loaded) == expected
    assert [(s.name, s.role, s.kind, s.p) for s in inspect_dropout(loaded)] == \
        [(s.name, s.role, s.kind, s.p) for s in inspect_dropout(model)]
    inputs = tiny_inputs(model)
    assert torch.equal(_logits(loaded, inputs, True), _logits(model, inputs, True))

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager")  # no key
    assert not any(isinstance(m, InjectedDropout) for m in plain.modules()) and _hooks(plain) == 0
    assert torch.equal(_logits(plain, inputs, False), _logits(model, inputs, False))


def test_rate_zero_installs_nothing_and_is_not_missing():
    model = tiny_model("llama")
    before = _structure(model)
    report = apply_dropout(model, 0.0, warn_missing=False)
    assert _structure(model) == before
    assert set(report.missing_roles) == {"classifier", "lora"}  # embedding, hidden, activation can be injected


def test_installed_site_at_rate_zero_draws_no_random_numbers():
    model = tiny_model("mistral")
    inputs = tiny_inputs(model)
    plain = _logits(model, inputs, True).detach()
    apply_dropout(model, "hidden=0.1,activation=0.1")
    apply_dropout(model, "hidden=0.0,activation=0.0")
    assert {s.kind for s in inspect_dropout(model) if s.role == "hidden"} == {"injected"}
    torch.manual_seed(0)
    state = torch.get_rng_state()
    model.train()
    out = model(**inputs).logits.detach()
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(out, plain)


def test_restore_after_two_patches_gives_back_the_original():
    model = tiny_model("qwen2")
    before = _structure(model)
    first = apply_dropout(model, "hidden=0.1")
    second = apply_dropout(model, "hidden=0.3,embedding=0.1")
    assert injected_rates(model) == {"embedding": 0.1, "hidden": 0.3}
    restore_dropout(model, second)
    assert injected_rates(model) == {"hidden": 0.1} and model.config.dropout_tune_injected == {"hidden": 0.1}
    restore_dropout(model, first)
    assert _structure(model) == before


def test_plain_loop_scheduler_sets_injected_rates_per_step():
    model = tiny_model("llama")
    schedule = {"hidden": {"shape": "linear", "start": 0.2, "end": 0.0},
                "embedding": {"shape": "late", "p": 0.1, "start": 0.5}}
    scheduler = DropoutScheduler(model, schedule, total_steps=4)
    seen = []
    for _ in range(4):
        rates = {}
        for site in inspect_dropout(model):
            if site.kind == "injected":
                rates.setdefault(site.role, set()).add(site.p)
        seen.append(rates)
        scheduler.step()
    hidden = [scheduler.schedule_set.rates_at(step, 4)["hidden"] for step in range(4)]
    assert hidden == pytest.approx([0.2, 0.15, 0.1, 0.05])
    # embedding's "late" rate is 0 for the first half: its sites are added when it turns on
    assert seen == [{"hidden": {hidden[0]}}, {"hidden": {hidden[1]}}, {"hidden": {hidden[2]}, "embedding": {0.1}},
                    {"hidden": {hidden[3]}, "embedding": {0.1}}]


def test_mc_dropout_makes_injected_sites_stochastic():
    model = tiny_model("llama").eval()
    inputs = tiny_inputs(model)
    deterministic = model(**inputs).logits
    with mc_dropout(model, "hidden=0.1") as sites:  # injected for the block, removed on exit
        assert {s.kind for s in sites} == {"injected"}
        first, second = model(**inputs).logits, model(**inputs).logits
    assert not torch.equal(first, second)
    assert not any(isinstance(m, InjectedDropout) for m in model.modules()) and _hooks(model) == 0
    assert torch.equal(model(**inputs).logits, deterministic)

    apply_dropout(model, "hidden=0.1")  # sites injected for training, model in eval mode: mc_dropout turns them on
    model.eval()
    with mc_dropout(model) as sites:
        assert {s.role for s in sites} == {"hidden"}
        assert not torch.equal(model(**inputs).logits, model(**inputs).logits)
    assert torch.equal(model(**inputs).logits, deterministic)


def test_gradient_checkpointing_replays_the_same_masks():
    inputs = tiny_inputs(tiny_model("llama"))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model("llama")
        apply_dropout(model, RATES)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        _logits(model, inputs, True).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_deepcopy_carries_its_own_injected_sites():
    import copy

    model = tiny_model("llama")
    apply_dropout(model, "hidden=0.2")
    inputs = tiny_inputs(model)
    twin = copy.deepcopy(model)
    assert torch.equal(_logits(twin, inputs, True), _logits(model, inputs, True))
    apply_dropout(twin, "hidden=0.0")  # the copy's hooks call the copy's modules
    assert not torch.equal(_logits(twin, inputs, True), _logits(model, inputs, True))
    assert torch.equal(_logits(twin, inputs, True), _logits(twin, inputs, False))
