"""The registry table agrees with what each family's constructor really does."""

import pytest

from dropout_tune import inspect_dropout, inspect_stochastic_depth
from dropout_tune.patching import KINDS
from dropout_tune.registry import FAMILY_DROPOUT, guess_role
from dropout_tune.roles import ROLES
from dropout_tune.testing import FAMILIES, TINY_CONFIG_KWARGS, tiny_model

REQUIRED = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert", "gpt2",
            "gpt_neox", "llama", "mistral", "qwen2", "gemma", "phi", "t5", "bart", "vit", "whisper"]


def test_every_required_family_is_registered_and_buildable():
    assert set(REQUIRED) <= set(FAMILY_DROPOUT)
    assert set(FAMILY_DROPOUT) == set(TINY_CONFIG_KWARGS), "each registry family needs a tiny config, and vice versa"


def test_table_roles_are_valid():
    for family in FAMILY_DROPOUT.values():
        assert set(family.sites.values()) <= set(ROLES)
        for roles in family.config_keys.values():
            assert set(roles) <= set(ROLES)
        assert set(family.config_fallbacks) <= set(family.config_keys)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_each_site_takes_its_rate_from_a_key_feeding_its_role(model_type):
    """Build with a distinct sentinel rate per config key: each site must hold the sentinel of a key that the
    registry says feeds the site's role. This re-derives the table from the constructors."""
    family = FAMILY_DROPOUT[model_type]
    sentinels = {key: round(0.011 * (i + 1), 4) for i, key in enumerate(family.config_keys)}
    model = tiny_model(model_type, **sentinels)
    sites = inspect_dropout(model)
    assert sites, f"{model_type}: no dropout sites found"
    by_rate = {rate: key for key, rate in sentinels.items()}
    for site in sites:
        assert not site.guessed and site.role is not None, f"{site.name} is not in the registry table"
        key = by_rate.get(round(site.p, 4))
        assert key is not None, f"{site.name} has p={site.p}, which no config key set"
        assert site.role in family.config_keys[key], (
            f"{site.name} (role {site.role}) is fed by {key!r}, which the table says feeds {family.config_keys[key]}")


@pytest.mark.parametrize("model_type", FAMILIES)
def test_default_build_has_only_classified_sites(model_type):
    sites = inspect_dropout(tiny_model(model_type))
    assert all(s.role and not s.guessed for s in sites)
    assert all(s.kind in KINDS for s in sites)


def test_kinds_are_detected():
    kinds = {s.name: s.kind for s in inspect_dropout(tiny_model("bert"))}
    assert kinds["bert.encoder.layer.0.attention.self.dropout"] == "module_p"  # read as self.dropout.p
    assert kinds["bert.encoder.layer.0.output.dropout"] == "module"
    kinds = {s.name: s.kind for s in inspect_dropout(tiny_model("deberta-v2"))}
    assert kinds["deberta.encoder.layer.0.attention.self.dropout"] == "module"  # applied as a module on probs
    kinds = {s.name: s.kind for s in inspect_dropout(tiny_model("modernbert"))}
    assert kinds["model.layers.0.attn.out_drop"] == "placeholder"  # nn.Identity: built with attention_dropout=0
    assert kinds["model.layers.0.attn.attention_dropout"] == "attribute"


def test_layerdrop_is_reported_apart():
    model = tiny_model("whisper", encoder_layerdrop=0.2)
    assert "encoder.layerdrop" not in {s.name for s in inspect_dropout(model)}
    assert {s.name: s.p for s in inspect_stochastic_depth(model)}["encoder.layerdrop"] == 0.2


def test_generic_roles():
    assert guess_role("FooAttention", "attention_dropout") == "attention"
    assert guess_role("FooAttention", "resid_dropout") == "hidden"
    assert guess_role("FooLayer", "activation_dropout") == "activation"
    assert guess_role("FooModel", "embd_dropout") == "embedding"
    assert guess_role("FooForSequenceClassification", "dropout") == "classifier"
