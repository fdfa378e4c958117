"""The registry table agrees with what each family's constructor really does."""

import fnmatch
import importlib
import inspect
import pkgutil
import re

import pytest
from torch import nn
from transformers.models.auto.configuration_auto import model_type_to_module_name

from dropout_tune import inspect_dropout, inspect_stochastic_depth
from dropout_tune.patching import KINDS
from dropout_tune.registry import FAMILY_DROPOUT, FamilyDropout, guess_role, supports_sdpa, trunk_layers_path
from dropout_tune.roles import ROLES, Role
from dropout_tune.testing import FAMILIES, TINY_CONFIG_KWARGS, tiny_model

REQUIRED = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert", "gpt2",
            "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma", "phi", "t5", "bart", "vit", "whisper"]


def test_every_required_family_is_registered_and_buildable():
    assert set(REQUIRED) <= set(FAMILY_DROPOUT)
    assert set(FAMILY_DROPOUT) == set(TINY_CONFIG_KWARGS), "each registry family needs a tiny config, and vice versa"


def test_table_roles_are_valid():
    for family in FAMILY_DROPOUT.values():
        assert set(family.sites.values()) <= set(ROLES)
        for roles in family.config_keys.values():
            assert set(roles) <= set(ROLES)
        assert set(family.config_fallbacks) <= set(family.config_keys)


def test_roles_are_stored_as_plain_strings_and_typos_fail_at_definition():
    family = FamilyDropout(config_keys={"p": (Role.HIDDEN, "attention")}, sites={"FooLayer.dropout": Role.HIDDEN})
    assert family.config_keys == {"p": ("hidden", "attention")}
    assert type(family.sites["FooLayer.dropout"]) is str and type(family.config_keys["p"][0]) is str
    assert all(type(role) is str for entry in FAMILY_DROPOUT.values() for role in entry.sites.values())
    with pytest.raises(ValueError, match="'hiden'"):
        FamilyDropout(config_keys={}, sites={"FooLayer.dropout": "hiden"})


# ---- reverse coverage: every name in an entry exists in transformers ----------------------------------------------


def _family_classes(model_type):
    """Every class defined in the family's transformers.models.<family>.modeling_* modules, by name."""
    package = importlib.import_module(f"transformers.models.{model_type_to_module_name(model_type)}")
    classes = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("modeling_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            classes.update({name: obj for name, obj in vars(module).items()
                            if inspect.isclass(obj) and obj.__module__ == module.__name__})
    return classes


def _sets_attribute(cls, attr, instances):
    """An instance of cls in the tiny model has attr, or an __init__ along its MRO assigns self.<attr>."""
    if any(isinstance(module, cls) and hasattr(module, attr) for module in instances):
        return True
    assignment = re.compile(rf"self\.{re.escape(attr)}\s*(:[^=\n]*)?=[^=]")
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            try:
                source = inspect.getsource(klass.__init__)
            except (OSError, TypeError):
                continue
            if assignment.search(source):
                return True
    return False


def _unresolved_names(model_type):
    """The entry's OwnerClass.attr names (sites and stochastic depth) that no class of the family backs."""
    family = FAMILY_DROPOUT[model_type]
    classes = _family_classes(model_type)
    instances = list(tiny_model(model_type).modules())
    unresolved = []
    for name in [*family.sites, *family.stochastic_depth]:
        owner, attr = name.split(".")
        matching = [cls for class_name, cls in classes.items() if fnmatch.fnmatchcase(class_name, owner)]
        if not any(_sets_attribute(cls, attr, instances) for cls in matching):
            unresolved.append(name if matching else f"{name} (no class {owner})")
    return unresolved


@pytest.mark.parametrize("model_type", FAMILIES)
def test_every_name_in_an_entry_is_a_real_class_with_that_attribute(model_type):
    assert _unresolved_names(model_type) == []


def test_reverse_coverage_catches_a_stale_name(monkeypatch):
    stale = FamilyDropout(config_keys=FAMILY_DROPOUT["bert"].config_keys,
                          sites={**FAMILY_DROPOUT["bert"].sites, "BertSequenceSummary.first_dropout": "classifier",
                                 "BertEmbeddings.no_such_dropout": "embedding"})
    monkeypatch.setitem(FAMILY_DROPOUT, "bert", stale)
    assert _unresolved_names("bert") == ["BertSequenceSummary.first_dropout (no class BertSequenceSummary)",
                                         "BertEmbeddings.no_such_dropout"]


# ---- the other family knowledge: trunk layers, SDPA ---------------------------------------------------------------


@pytest.mark.parametrize("model_type", FAMILIES)
def test_trunk_layers_path_names_the_layer_stack(model_type):
    path = trunk_layers_path(model_type)
    if path is None:
        pytest.skip(f"{model_type} has no single layer stack")
    model = tiny_model(model_type)
    layers = model.base_model.get_submodule(path)
    assert isinstance(layers, nn.ModuleList)
    assert len(layers) == 2  # the tiny configs have 2 layers
    assert all(not isinstance(layer, nn.ModuleList) for layer in layers)


def test_trunk_layers_path_of_unknown_and_stackless_families():
    assert trunk_layers_path("no-such-family") is None and trunk_layers_path(None) is None
    assert {mt for mt in FAMILY_DROPOUT if trunk_layers_path(mt) is None} == {"albert", "t5", "bart", "whisper"}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_sdpa_flag_matches_transformers(model_type):
    assert supports_sdpa(model_type) == type(tiny_model(model_type))._supports_sdpa


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
