"""apply / restore / inspect beyond the exactness property: PEFT, meta device, config round-trip, bad input."""

import math
import warnings

import pytest
import torch

from dropout_tune import (
    DropoutSpec,
    apply_dropout,
    config_overrides,
    current_rates,
    dropout_overrides,
    inspect_dropout,
    restore_dropout,
)
from dropout_tune.testing import tiny_config, tiny_inputs, tiny_model


def _lora(model, lora_dropout):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=lora_dropout, target_modules=["query", "value"],
                        task_type="SEQ_CLS")
    return get_peft_model(model, config)


def test_peft_lora_placeholder_is_switched_on_exactly():
    built = _lora(tiny_model("bert"), lora_dropout=0.2)
    patched = _lora(tiny_model("bert"), lora_dropout=0.0)
    patched.load_state_dict(built.state_dict())
    lora_sites = [s for s in inspect_dropout(patched) if s.role == "lora"]
    assert len(lora_sites) == 4 and {s.kind for s in lora_sites} == {"placeholder"}
    assert all(s.role for s in inspect_dropout(patched)), "every site of a PEFT model has a role, once"
    assert len({s.name for s in inspect_dropout(patched)}) == len(inspect_dropout(patched))

    report = apply_dropout(patched, DropoutSpec(lora=0.2))
    assert {c.role for c in report.changes} == {"lora"} and len(report.changes) == 4
    assert patched.peft_config["default"].lora_dropout == 0.2
    inputs = tiny_inputs(patched)
    for model in (built, patched):
        model.train()
    torch.manual_seed(0)
    a = built(**inputs).logits
    torch.manual_seed(0)
    b = patched(**inputs).logits
    assert torch.equal(a, b)

    restore_dropout(patched, report)
    assert {s.kind for s in inspect_dropout(patched) if s.role == "lora"} == {"placeholder"}
    assert patched.peft_config["default"].lora_dropout == 0.0


def test_placeholder_replacement_keeps_eval_mode():
    model = tiny_model("modernbert").eval()
    apply_dropout(model, DropoutSpec.uniform(0.5))
    assert not model.model.layers[0].attn.out_drop.training
    inputs = tiny_inputs(model)
    assert torch.equal(model(**inputs).logits, model(**inputs).logits)


def test_meta_device_model_is_patched():
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(tiny_config("llama"))
    report = apply_dropout(model, "attention=0.1")
    assert len(report.changes) == 2 and current_rates(model) == {"attention": 0.1}


def test_save_pretrained_round_trips_the_rates(tmp_path):
    model = tiny_model("bert")
    apply_dropout(model, "embedding=0.2,hidden=0.2,attention=0.05")
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path)
    assert [(s.name, s.p) for s in inspect_dropout(reloaded)] == [(s.name, s.p) for s in inspect_dropout(model)]


def test_hidden_change_pins_fallback_classifier():
    """BERT's classifier_dropout=None falls back to hidden_dropout_prob: it is pinned to keep the classifier."""
    overrides = config_overrides("bert", "embedding=0.3,hidden=0.3")
    assert overrides == {"hidden_dropout_prob": 0.3, "classifier_dropout": 0.1}
    model = tiny_model("bert")
    apply_dropout(model, "embedding=0.3,hidden=0.3")
    assert model.config.classifier_dropout == 0.1 and model.dropout.p == 0.1


def test_inexpressible_spec_warns_and_leaves_config():
    model = tiny_model("bert")
    with pytest.warns(UserWarning, match="cannot express"):
        report = apply_dropout(model, "hidden=0.3")  # hidden_dropout_prob also feeds embedding (0.1)
    assert model.config.hidden_dropout_prob == 0.1 and report.config_problems
    assert model.bert.encoder.layer[0].output.dropout.p == 0.3 and model.bert.embeddings.dropout.p == 0.1
    with pytest.raises(ValueError, match="hidden_dropout_prob"):
        config_overrides(model.config, "hidden=0.3")


def test_only_changed_sites_are_touched_and_context_manager_restores():
    model = tiny_model("bert")
    assert not apply_dropout(model, DropoutSpec(attention=0.1, hidden=0.1, embedding=0.1))
    with dropout_overrides(model, "attention=0.0") as report:
        assert len(report.changes) == 2
        assert current_rates(model)["attention"] == 0.0
    assert current_rates(model)["attention"] == 0.1


def test_restore_refuses_a_report_from_another_model():
    model_a, model_b = tiny_model("bert"), tiny_model("bert")
    report = apply_dropout(model_a, "attention=0.3")
    apply_dropout(model_b, "attention=0.2")
    with pytest.raises(ValueError, match="another BertForSequenceClassification"):
        restore_dropout(model_b, report)
    assert current_rates(model_a)["attention"] == 0.3 and current_rates(model_b)["attention"] == 0.2
    restore_dropout(torch.compile(model_a), report)  # the same model inside a wrapper is fine
    assert current_rates(model_a)["attention"] == 0.1


def test_missing_role_warns():
    with pytest.warns(UserWarning, match="activation"):
        apply_dropout(tiny_model("bert"), "activation=0.1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_dropout(tiny_model("bert"), "activation=0.1", warn_missing=False)


def test_unknown_family_generic_discovery_and_strict():
    model = tiny_model("bert")
    model.config.model_type = "my-bert"  # pretend the family is unknown
    sites = inspect_dropout(model)
    assert {s.role for s in sites} == {"embedding", "attention", "hidden", "classifier"}
    assert all(s.guessed for s in sites)
    with pytest.raises(ValueError, match="not in the dropout registry"):
        apply_dropout(model, "0.1", strict=True)
    with pytest.raises(ValueError, match="not in the dropout registry"):
        config_overrides(model.config, "0.1")


@pytest.mark.parametrize("bad,match", [
    ("attention=1.5", "outside"), ("attention=-0.1", "outside"), ("attention=nan", "NaN"),
    ("attention=abc", "not a number"), ("attn=0.1", "unknown dropout role 'attn'; valid roles"),
    ("attention", "not a number"), ("attention=0.1,", "cannot parse"), ("", "empty"),
    ("attention=0.1,attention=0.2", "twice"),
])
def test_bad_spec_strings(bad, match):
    with pytest.raises(ValueError, match=match):
        DropoutSpec.parse(bad)


def test_bad_spec_values():
    with pytest.raises(ValueError, match="hidden"):
        DropoutSpec(hidden=float("nan"))
    with pytest.raises(ValueError, match="1.0"):
        DropoutSpec.uniform(1.0)
    with pytest.raises(ValueError, match="valid roles"):
        DropoutSpec.from_dict({"dropout": 0.1})
    assert DropoutSpec.coerce(0.1) == DropoutSpec.uniform(0.1)
    assert not math.isnan(DropoutSpec.coerce({"all": 0.0}).lora)


def test_every_site_kind_is_one_entry_that_patching_mc_and_compile_all_know():
    from dropout_tune.compiled_rates import PREPARE_BY_KIND
    from dropout_tune.registry import FAMILY_DROPOUT
    from dropout_tune.sites import SITE_KINDS

    assert set(PREPARE_BY_KIND) == set(SITE_KINDS)
    seen = set()
    for family in FAMILY_DROPOUT:
        model = tiny_model(family)
        seen |= {site.kind for site in inspect_dropout(model)}  # placeholders: before a rate replaces them
        apply_dropout(model, "hidden=0.1,head=0.1", warn_missing=False)
        seen |= {site.kind for site in inspect_dropout(model)}
    assert seen == set(SITE_KINDS)  # every kind occurs in some family, and no site has a kind without an entry
