"""The acceptance property: a live patch equals load-time configuration, bit for bit."""

import pytest
import torch

from dropout_tune import DropoutSpec, apply_dropout, config_overrides, current_rates, restore_dropout
from dropout_tune.injection import injectable_roles
from dropout_tune.registry import supports_sdpa
from dropout_tune.testing import FAMILIES, tiny_inputs, tiny_model

UNIFORM = DropoutSpec.uniform(0.3)
# Per-role rates for families whose config has separate keys (roles sharing a key get the same rate).
PER_ROLE = {
    "bert": DropoutSpec(embedding=0.2, hidden=0.2, attention=0.05, classifier=0.35),
    "distilbert": DropoutSpec(embedding=0.2, hidden=0.2, attention=0.05, classifier=0.35),
    "gpt2": DropoutSpec(embedding=0.25, attention=0.05, hidden=0.15),
    "bart": DropoutSpec(embedding=0.2, hidden=0.2, attention=0.05, activation=0.15, classifier=0.35),
    "phi": DropoutSpec(embedding=0.25, attention=0.05, hidden=0.15),
    "modernbert": DropoutSpec(embedding=0.25, attention=0.05, hidden=0.05, activation=0.15, classifier=0.35),
}
CASES = [(ft, "uniform", UNIFORM) for ft in FAMILIES] + [(ft, "per-role", spec) for ft, spec in PER_ROLE.items()]


def _output(model, inputs, train: bool):
    model.train(train)
    torch.manual_seed(1234)
    out = model(**inputs)
    tensor = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    return tensor.detach()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type,label,spec", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_live_patch_equals_load_time(model_type, label, spec, attn):
    if attn == "sdpa" and not supports_sdpa(model_type):
        pytest.skip(f"transformers has no SDPA attention for {model_type}: eager is its only implementation")
    built = tiny_model(model_type, attn_implementation=attn, **config_overrides(model_type, spec))
    # roles the family has no sites for are injected after loading, as load_model does from the saved config
    apply_dropout(built, {role: p for role, p in spec.items() if role in injectable_roles(built)}, warn_missing=False)
    patched = tiny_model(model_type, attn_implementation=attn)
    patched.load_state_dict(built.state_dict())
    inputs = tiny_inputs(patched)
    before = _output(patched, inputs, train=True)

    report = apply_dropout(patched, spec, warn_missing=False)
    assert report.changes, "the spec should change this tiny model"
    assert current_rates(patched) == current_rates(built)
    assert torch.equal(_output(patched, inputs, True), _output(built, inputs, True))
    assert torch.equal(_output(patched, inputs, False), _output(built, inputs, False))
    assert not torch.equal(_output(patched, inputs, True), before), "the patch changed nothing observable"
    # config written so that a reload gives the same rates
    for key, value in config_overrides(model_type, spec).items():
        assert getattr(patched.config, key) == value

    restore_dropout(patched, report)
    assert torch.equal(_output(patched, inputs, True), before)
