"""Mask kinds (element, per_sequence, token, example, gaussian, alpha) on module sites (BERT) and injected sites
(Llama), depth profiles, and the refusal of masks a site cannot honour."""

import pytest
import torch
import torch.nn.functional as F

from dropout_tune import apply_dropout, inspect_dropout, restore_dropout
from dropout_tune.masks import MASK_KINDS, MaskedDropout, drop, mask_kind
from dropout_tune.spec import DropoutSpec
from dropout_tune.testing import tiny_inputs, tiny_model

BERNOULLI = ("element", "per_sequence", "token", "example")


def _sharing(mask):
    """Which axes of a (B, T, D) input share one draw."""
    return {"element": (), "per_sequence": (1,), "token": (2,), "example": (1, 2)}[mask]


@pytest.mark.parametrize("mask", BERNOULLI)
def test_bernoulli_masks_share_draws_exactly_along_their_axes_and_scale_kept_entries(mask):
    p = 0.3
    x = torch.rand(64, 7, 5) + 0.5  # no zeros of its own
    y = drop(x, p, mask=mask, generator=torch.Generator().manual_seed(1))
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    for axis in _sharing(mask):  # one draw along these axes: the keep pattern does not vary along them
        assert torch.equal(kept, kept.narrow(axis, 0, 1).expand_as(kept))
    for axis in {1, 2} - set(_sharing(mask)):  # and it does vary along the others
        assert not torch.equal(kept, kept.narrow(axis, 0, 1).expand_as(kept))
    assert abs(float(kept.float().mean()) - (1 - p)) < 0.06


@pytest.mark.parametrize("mask", list(MASK_KINDS))
def test_every_mask_keeps_the_mean_and_is_the_identity_in_eval_and_at_zero(mask):
    x = torch.randn(400, 6, 8)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([drop(x, 0.2, mask=mask, generator=generator) for _ in range(200)])
    if mask == "alpha":  # AlphaDropout keeps the mean and variance of standard-normal inputs, not x itself
        assert abs(float(draws.mean())) < 0.02 and abs(float(draws.std()) - 1) < 0.02
    else:
        assert torch.allclose(draws.mean(0).mean(), x.mean(), atol=0.01)
        assert float((draws.mean(0) - x).abs().mean()) < 0.1
    assert drop(x, 0.2, training=False, mask=mask) is x and drop(x, 0.0, mask=mask) is x


def test_gaussian_noise_has_variance_p_over_one_minus_p_and_no_zeros():
    x = torch.ones(200_000)
    y = drop(x, 0.2, mask="gaussian", generator=torch.Generator().manual_seed(0))
    assert abs(float(y.var()) - 0.2 / 0.8) < 0.01 and abs(float(y.mean()) - 1) < 0.01
    assert not bool((y == 0).any())


def test_alpha_is_torchs_alpha_dropout_and_takes_a_tensor_rate():
    x = torch.randn(1000, 16)
    torch.manual_seed(3)
    ours = drop(x, 0.1, mask="alpha")
    torch.manual_seed(3)
    assert torch.equal(ours, F.alpha_dropout(x, 0.1, True))
    tensor_rate = drop(x, torch.tensor(0.1), mask="alpha", generator=torch.Generator().manual_seed(0))
    assert abs(float(tensor_rate.mean()) - float(x.mean())) < 0.05 and abs(float(tensor_rate.std()) - 1) < 0.05


def test_element_with_a_float_rate_is_f_dropout_bit_for_bit():
    x = torch.randn(4, 5, 6)
    torch.manual_seed(0)
    expected = F.dropout(x, 0.1, True)
    torch.manual_seed(0)
    assert torch.equal(MaskedDropout(0.1).train()(x), expected)


def test_mask_names_and_aliases():
    assert mask_kind("variational") == "per_sequence" and mask_kind("drop_path") == "example"
    with pytest.raises(ValueError, match="did you mean 'gaussian'"):
        mask_kind("gausian")


# ---- on a model's sites ---------------------------------------------------------------------------------------------


def _record_outputs(model, names):
    seen, modules = {}, dict(model.named_modules())
    handles = [modules[name].register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, (a[0], out)))
               for name in names]
    return seen, handles


@pytest.mark.parametrize("model_type", ["bert", "llama"])
@pytest.mark.parametrize("mask", ["per_sequence", "token", "example"])
def test_a_masked_role_drops_with_that_sharing_on_every_site_and_restores_bitwise(model_type, mask):
    model = tiny_model(model_type)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = [(s.name, s.kind, s.p, s.mask) for s in inspect_dropout(model)]
    report = apply_dropout(model, f"hidden=0.4:mask={mask}")
    hidden = [s for s in inspect_dropout(model) if s.role == "hidden"]
    assert hidden and {(s.mask, s.p) for s in hidden} == {(mask, 0.4)}
    seen, handles = _record_outputs(model, [s.name for s in hidden])
    model.train()
    torch.manual_seed(0)
    model(**tiny_inputs(model, batch_size=8, seq_len=12))
    for name, (inp, out) in seen.items():
        kept = out != 0
        scaled = out[kept] * 0.6
        assert torch.allclose(scaled, inp[kept], atol=1e-6), name
        for axis in _sharing(mask):
            assert torch.equal(kept, kept.narrow(axis, 0, 1).expand_as(kept)), (name, axis)
    for handle in handles:
        handle.remove()
    model.eval()
    inputs = tiny_inputs(model)
    with torch.no_grad():
        eval_out = model(**inputs).logits
    restore_dropout(model, report)
    assert [(s.name, s.kind, s.p, s.mask) for s in inspect_dropout(model)] == reference
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, eval_out)  # eval mode: masks draw nothing


def test_depth_linear_gives_layer_l_of_L_the_rate_p_l_over_L_minus_1():
    model = tiny_model("bert", num_hidden_layers=3)
    apply_dropout(model, "hidden=0.3:depth=linear:mask=example")
    rates = {s.name: s.p for s in inspect_dropout(model) if s.role == "hidden"}
    for layer, expected in enumerate([0.0, 0.15, 0.3]):
        in_layer = [p for name, p in rates.items() if f"layer.{layer}." in name]
        assert in_layer and all(p == pytest.approx(expected) for p in in_layer)
    with pytest.raises(ValueError, match="classifier: site .* is not inside a stack of layers"):
        apply_dropout(model, "classifier=0.1:depth=linear")


def test_a_mask_the_site_cannot_honour_is_one_line_and_changes_nothing():
    model = tiny_model("bert")
    reference = inspect_dropout(model)
    with pytest.raises(ValueError, match=r"mask=token for role attention: site .*attention.self.dropout cannot "
                                         r"honour it exactly .*roles of this model that can take a mask: "
                                         r"classifier, embedding, head, hidden"):
        apply_dropout(model, "hidden=0.2:mask=token,attention=0.1:mask=token")
    assert inspect_dropout(model) == reference


def test_spec_vocabulary_strings_and_dicts_agree():
    text = DropoutSpec.parse("hidden=0.1:mask=per_sequence:depth=linear,attention=0")
    data = DropoutSpec.from_dict({"hidden": {"p": 0.1, "mask": "variational", "depth": "linear"}, "attention": 0})
    assert text == data and text.to_dict() == {"attention": 0.0, "hidden": {"p": 0.1, "mask": "per_sequence",
                                                                             "depth": "linear"}}
    assert DropoutSpec.from_dict(text.to_dict()) == text
    with pytest.raises(ValueError, match="unknown mask 'tokn'; did you mean 'token'"):
        DropoutSpec.parse("hidden=0.1:mask=tokn")
    with pytest.raises(ValueError, match="unknown depth 'steep'"):
        DropoutSpec.parse("hidden=0.1:depth=steep")


# ---- masks everywhere a rate goes: schedules, resume, MC, save / load, the command line, torch.compile -----------


def test_a_schedule_changes_the_rate_and_keeps_the_mask_also_when_started_mid_training():
    from dropout_tune.callbacks import DropoutScheduler

    schedule = "hidden=linear:0.3:0.0:mask=per_sequence:depth=linear"
    model = tiny_model("bert", num_hidden_layers=3)
    scheduler = DropoutScheduler(model, schedule, total_steps=10)
    for step in range(10):
        scheduler.step()
        hidden = [s for s in inspect_dropout(model) if s.role == "hidden"]
        top = max(s.p for s in hidden)
        assert {s.mask for s in hidden} == {"per_sequence"}
        assert top == pytest.approx(0.3 * (1 - (step + 1) / 10)), step
        assert all(s.p == 0 for s in hidden if "layer.0." in s.name)  # depth=linear: layer 0 of 3 at 0
    resumed = tiny_model("bert", num_hidden_layers=3)  # a fresh model, as a resumed run builds it
    later = DropoutScheduler(resumed, schedule, total_steps=10, last_step=6)
    later.step()
    assert [(s.name, s.p, s.mask) for s in inspect_dropout(resumed)] == [
        (s.name, s.p, s.mask) for s in inspect_dropout(_stepped(schedule, 7))]


def _stepped(schedule, steps):
    from dropout_tune.callbacks import DropoutScheduler

    model = tiny_model("bert", num_hidden_layers=3)
    scheduler = DropoutScheduler(model, schedule, total_steps=10)
    for _ in range(steps):
        scheduler.step()
    return model


def test_mc_dropout_samples_with_each_sites_mask():
    from dropout_tune.mc import mc_dropout

    model = tiny_model("llama")
    apply_dropout(model, "hidden=0.5:mask=example")
    seen, handles = _record_outputs(model, [s.name for s in inspect_dropout(model) if s.role == "hidden"])
    with mc_dropout(model) as sites:
        assert {s.mask for s in sites if s.role == "hidden"} == {"example"}
        model(**tiny_inputs(model, batch_size=16, seq_len=6))
    for handle in handles:
        handle.remove()
    for name, (_, out) in seen.items():
        per_example = (out != 0).flatten(1)
        assert bool((per_example.all(1) | ~per_example.any(1)).all()), name  # all kept or all dropped per example
        assert 0 < float(per_example.any(1).float().mean()) < 1, name


@pytest.mark.parametrize("model_type, spec", [("bert", "hidden=0.2:mask=token:depth=linear,embedding=0.2"),
                                              ("llama", "hidden=0.1:mask=per_sequence")])
def test_save_pretrained_and_load_model_keep_masks_and_depth(tmp_path, model_type, spec):
    from dropout_tune.loading import load_model

    model = tiny_model(model_type, num_hidden_layers=3)
    apply_dropout(model, spec)
    model.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), num_labels=model.config.num_labels)
    assert [(s.name, s.role, s.p, s.mask) for s in inspect_dropout(again)] == [
        (s.name, s.role, s.p, s.mask) for s in inspect_dropout(model)]


def test_inspect_shows_masks_and_refuses_a_mask_a_site_cannot_honour_in_one_line(tmp_path, capsys):
    from dropout_tune.cli import main
    from dropout_tune.testing import save_tiny_text_model

    save_tiny_text_model(tmp_path, "bert")
    assert main(["inspect", str(tmp_path), "--dropout", "hidden=0.2:mask=token"]) == 0
    out = capsys.readouterr().out
    assert "(module -> module:token)" in out
    assert main(["inspect", str(tmp_path), "--dropout", "attention=0.1:mask=token"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mask=token for role attention" in err[0] and "cannot honour it exactly" in err[0]


@pytest.mark.parametrize("mask", ["per_sequence", "token", "example", "gaussian", "alpha"])
def test_a_schedule_over_a_mask_kind_compiles_at_most_one_extra_graph(mask):
    from torch._dynamo.utils import counters

    from dropout_tune.callbacks import DropoutScheduler

    torch._dynamo.reset()
    counters.clear()
    try:
        model = tiny_model("bert", attn_implementation="sdpa").train()
        inputs = tiny_inputs(model)
        scheduler = DropoutScheduler(model, f"hidden=linear:0.2:0:mask={mask},attention=0", total_steps=9)
        scheduler.step()
        compiled = torch.compile(model, backend="eager")
        for step in range(9):
            compiled(**inputs)
            if step < 8:
                scheduler.step()
        assert {s.mask for s in inspect_dropout(model) if s.role == "hidden"} == {mask}
        assert counters["stats"]["unique_graphs"] <= 2
    finally:
        torch._dynamo.reset()


# ---- the head role (DropHead) ----------------------------------------------------------------------------------------


def test_every_registry_family_gets_a_head_site_per_attention_block():
    from dropout_tune.registry import FAMILY_DROPOUT

    for family in FAMILY_DROPOUT:
        model = tiny_model(family)
        report = apply_dropout(model, "head=0.1", warn_missing=False)
        heads = [s for s in inspect_dropout(model) if s.role == "head"]
        assert heads and {(s.kind, s.p, s.mask) for s in heads} == {("injected", 0.1, "heads")}, family
        shared = family == "albert"  # ALBERT runs one shared layer num_hidden_layers times
        assert len(heads) >= (1 if shared else model.config.num_hidden_layers), family
        restore_dropout(model, report)
        assert not [s for s in inspect_dropout(model) if s.role == "head"], family


@pytest.mark.parametrize("model_type", ["bert", "llama", "gpt2", "t5"])
def test_head_dropout_drops_whole_heads_per_example_and_scales_the_rest(model_type):
    model = tiny_model(model_type)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = inspect_dropout(model)
    report = apply_dropout(model, "head=0.5")
    sites = [s for s in inspect_dropout(model) if s.role == "head"]
    modules = dict(model.named_modules())
    projections = {s.name: modules[s.owner] for s in sites}
    seen = {}
    handles = [modules[s.name].register_forward_hook(lambda m, a, out, name=s.name: seen.__setitem__(name, (a[0], out)))
               for s in sites]
    model.train()
    torch.manual_seed(0)
    model(**tiny_inputs(model, batch_size=8, seq_len=6))
    for handle in handles:
        handle.remove()
    heads = model.config.num_attention_heads
    for name, (inp, out) in seen.items():
        assert name in projections
        b, t, width = out.shape
        # a context row can be 0 by itself (causal position 0 whose one attention weight was dropped): judge a head
        # of an example by its nonzero inputs only
        live = (inp != 0).view(b, t, heads, width // heads)
        kept = (out != 0).view(b, t, heads, width // heads)
        per_head_kept = (kept & live).flatten(start_dim=3).any(3).any(1)  # (B, H)
        per_head_dropped = (~kept & live).flatten(start_dim=3).any(3).any(1)
        assert not bool((per_head_kept & per_head_dropped).any()), name  # one draw per example and head
        assert 0 < float(per_head_kept.float().mean()) < 1, name
        assert torch.allclose(out[out != 0], 2 * inp[out != 0]), name
    restore_dropout(model, report)
    assert inspect_dropout(model) == reference
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_head_rate_is_not_in_all_and_takes_no_mask_and_persists(tmp_path):
    from dropout_tune.loading import load_model

    model = tiny_model("bert")
    apply_dropout(model, "all=0.2")
    assert not [s for s in inspect_dropout(model) if s.role == "head"]
    with pytest.raises(ValueError, match="mask=token for role head: a head site drops whole attention heads"):
        apply_dropout(model, "head=0.1:mask=token")
    apply_dropout(model, "head=0.15")
    model.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), num_labels=model.config.num_labels)
    assert {(s.role, s.p) for s in inspect_dropout(again) if s.role == "head"} == {("head", 0.15)}


def test_tune_searches_a_roles_mask_and_the_head_rate():
    from dropout_tune.recipe import Recipe
    from dropout_tune.tune.space import SearchSpace, apply_params

    roles = ("embedding", "attention", "hidden", "classifier", "head")
    space = SearchSpace.from_dict({"mask.hidden": ["element", "variational", "example"], "rate.head": [0.0, 0.2]},
                                  roles)
    assert space.params["mask.hidden"].choices == ("element", "per_sequence", "example")
    assert "rate.head" not in SearchSpace.from_dict({"rate": [0.0, 0.3]}, roles).params  # `rate` is not DropHead
    recipe = Recipe.from_dict({"dropout": {"schedule": "hidden=early:0.1:until=0.3:depth=linear"}})
    trial = apply_params(recipe, {"mask.hidden": "per_sequence", "rate.head": 0.1}, roles)
    schedule = trial.dropout.parsed_schedule()
    assert schedule.options("hidden") == {"mask": "per_sequence", "depth": "linear"}
    assert schedule["hidden"].max_rate == 0.1 and schedule["head"].max_rate == 0.1
    with pytest.raises(ValueError, match="search.mask.hidden: unknown mask 'tokn'"):
        SearchSpace.from_dict({"mask.hidden": ["tokn"]}, roles)
    with pytest.raises(ValueError, match="search.mask.classifier: the recipe sets no classifier rate"):
        apply_params(recipe, {"mask.classifier": "token"}, roles)


def test_compare_takes_masks_and_drophead_in_its_schedules():
    from dropout_tune.compare import variants_from
    from dropout_tune.recipe import Recipe

    variants = variants_from([Recipe()], ["variational=all=0.1,hidden=0.1:mask=per_sequence", "drophead=head=0.1"])
    assert variants[0].recipe.dropout.parsed_schedule().options("hidden") == {"mask": "per_sequence"}
    assert variants[1].recipe.dropout.parsed_schedule()["head"].max_rate == 0.1
