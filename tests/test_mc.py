"""MC dropout: every site stochastic inside `mc_dropout`, the model exactly restored after it, and `mc_predict`'s
statistics and modes equal direct reference computations."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dropout_tune.mc import (ClassificationPrediction, RegressionPrediction, mc_dropout, mc_predict, trunk_families,
                             rows_for_budget)
from dropout_tune.patching import apply_dropout, inspect_dropout, inspect_stochastic_depth
from dropout_tune.registry import supports_sdpa, trunk_layers_path
from dropout_tune.spec import DropoutSpec
from dropout_tune.testing import FAMILIES, tiny_inputs, tiny_model, trace_dropout

torch.set_num_threads(1)

ALL_AT_0_1 = DropoutSpec.uniform(0.1)
#: every role at 0.1 but the embedding, which trunk mode treats as part of the deterministic trunk.
NO_EMBEDDING = DropoutSpec.from_dict({"all": 0.1, "embedding": 0.0})
#: families whose tiny model can be built with SDPA attention.
SDPA_FAMILIES = [f for f in FAMILIES if supports_sdpa(f)]


def build(family: str, **kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny_model(family, **kwargs)


def first_output(output) -> torch.Tensor:
    return output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state


# --- an independent tracer: which dropout site each real dropout application belongs to ----------------------------


@contextlib.contextmanager
def per_site_applications(model: nn.Module):
    """Count, per dropout site name, the dropout applications that really drop (``F.dropout`` with training and
    p > 0, or SDPA with dropout_p > 0), attributing each to the innermost module running that holds a site: the
    dropout module itself (kind module) or the owner whose forward reads the rate (module_p, attribute). Where one
    owner holds several sites (BART's layers: hidden and activation), the application goes to the one whose
    current rate it used ("<ambiguous>" when rates do not tell them apart)."""
    counts: dict[str, int] = {}
    stack: list[int] = []
    held: dict[int, list] = {}  # id(module running) -> [(site name, current rate of the site)]
    modules: dict[int, nn.Module] = {}
    for site in inspect_dropout(model):
        if site.kind == "placeholder":
            continue
        owner = model.get_submodule(site.owner)
        if site.kind == "module":
            module, rate = owner._modules[site.attr], (lambda m=owner._modules[site.attr]: m.p)
        elif site.kind == "module_p":  # the attention code reads `.p` inside the owner; the module is not called
            module, rate = owner, (lambda m=owner._modules[site.attr]: m.p)
        else:
            module, rate = owner, (lambda o=owner, a=site.attr: getattr(o, a))
        held.setdefault(id(module), []).append((site.name, rate))
        modules[id(module)] = module
    handles = []
    for key, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, key=key: stack.append(key) and None))
        handles.append(module.register_forward_hook(lambda m, a, o: stack.pop() and None))  # None: keep the output

    def record():
        if not stack:
            name = "<outside any site>"
        else:
            candidates = held[stack[-1]]
            matching = [n for n, rate in candidates if rate() == trace.rates[-1]]
            name = candidates[0][0] if len(candidates) == 1 else matching[0] if len(matching) == 1 else "<ambiguous>"
        counts[name] = counts.get(name, 0) + 1

    try:
        with trace_dropout(on_apply=record) as trace:
            yield counts
    finally:
        for handle in handles:
            handle.remove()


def snapshot(model: nn.Module) -> dict:
    return {
        "modules": [(name, id(m), type(m).__name__, m.training) for name, m in model.named_modules()],
        "sites": inspect_dropout(model),
        "depth": inspect_stochastic_depth(model),
        "config": model.config.to_dict(),
        "checkpointing": [(n, m.__dict__.get("gradient_checkpointing")) for n, m in model.named_modules()],
        "forward_overrides": [n for n, m in model.named_modules() if "forward" in m.__dict__],
        "hooks": [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()],
    }


def assert_restored(model: nn.Module, before: dict, state_before: dict) -> None:
    after = snapshot(model)
    for key in before:
        assert after[key] == before[key], key
    state_after = model.state_dict()
    assert state_after.keys() == state_before.keys()
    for key in state_before:
        assert torch.equal(state_after[key], state_before[key]), key


# --- mc_dropout over every registry family ---------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_is_applied_and_everything_restored(family, attn):
    if attn == "sdpa" and family not in SDPA_FAMILIES:
        pytest.skip("the family has no SDPA attention")  # not a failed check: the model cannot be built
    model = build(family, attn_implementation=attn)
    model.train()  # mc_dropout must not depend on the mode it finds, and must restore it
    inputs = tiny_inputs(model)
    before, state_before = snapshot(model), {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = first_output(model.eval()(**inputs))
        model.train()
        with mc_dropout(model, ALL_AT_0_1) as active:
            with per_site_applications(model) as counts:
                first = first_output(model(**inputs))
            second = first_output(model(**inputs))
            attention_sites = [s for s in inspect_dropout(model) if s.role == "attention"]
            assert not model.training  # the root stays in eval: only dropout sites and their owners are switched
            depth_rates = [s.p for s in inspect_stochastic_depth(model)]
        assert attention_sites, "every registry family has attention dropout"
        assert not torch.equal(first, second)
        # every attention-dropout site really dropped, and applications happen only inside known sites
        for site in attention_sites:
            assert counts.get(site.name, 0) >= 1, site.name
        assert "<outside any site>" not in counts
        assert {s.name for s in active} >= {s.name for s in attention_sites}
        assert all(p == 0.0 for p in depth_rates)
    assert_restored(model, before, state_before)
    model.eval()
    with torch.no_grad():
        again = first_output(model(**inputs))
        assert torch.equal(again, first_output(model(**inputs)))
        assert torch.allclose(again, reference, atol=1e-6)


def test_without_spec_every_site_with_a_rate_is_active():
    model = build("bert")
    expected = {s.name for s in inspect_dropout(model) if s.p > 0}
    with mc_dropout(model) as active, per_site_applications(model) as counts, torch.no_grad():
        model(**tiny_inputs(model))
    assert {s.name for s in active} == expected and len(expected) == 8
    assert set(counts) == expected  # every site dropped once: embeddings, attention, hidden, classifier


def test_spec_limits_roles_and_sets_rates():
    model = build("bert")
    with mc_dropout(model, "attention=0.3") as active, per_site_applications(model) as counts, torch.no_grad():
        model(**tiny_inputs(model))
        assert {s.role for s in active} == {"attention"}
        assert all(s.p == 0.3 for s in inspect_dropout(model) if s.role == "attention")
        assert model.bert.embeddings.dropout.training is False
    assert set(counts) == {s.name for s in active}
    assert all(s.p == 0.1 for s in inspect_dropout(model))


#: BART / Whisper built with a distinct rate per role, so each application's rate tells its role.
DISTINCT_RATES = {"dropout": 0.11, "activation_dropout": 0.12, "attention_dropout": 0.13}


@pytest.mark.parametrize("role", ["hidden", "activation", "attention", "embedding"])
@pytest.mark.parametrize("family", ["bart", "whisper"])
def test_spec_makes_only_its_roles_stochastic_where_one_module_owns_several(family, role):
    # BartEncoderLayer / WhisperEncoderLayer hold the hidden and the activation rate as attributes gated by the
    # layer's own train flag: switching the layer on for one role must not make the other drop.
    model = build(family, **DISTINCT_RATES)
    before = snapshot(model)
    with mc_dropout(model, {role: 0.3}) as active, per_site_applications(model) as counts, torch.no_grad():
        model(**tiny_inputs(model))
    assert active and {s.role for s in active} == {role} and all(s.p == 0.3 for s in active)
    assert set(counts) == {s.name for s in active}  # `sites` is exactly what dropped: nothing more, nothing less
    assert snapshot(model) == before


def test_rates_record_what_was_sampled():
    model = build("bart", **DISTINCT_RATES)
    pred = mc_predict(model, tiny_inputs(model), samples=2, spec="hidden=0.3", seed=0)
    assert pred.rates == {"embedding": 0.0, "attention": 0.0, "hidden": 0.3, "activation": 0.0, "classifier": 0.0}
    assert pred.to_dict()["rates"] == pred.rates
    bert = build("bert")
    assert mc_predict(bert, tiny_inputs(bert), samples=2, seed=0).rates == {
        "embedding": 0.1, "attention": 0.1, "hidden": 0.1, "classifier": 0.1}
    trunk = mc_predict(bert, tiny_inputs(bert), samples=2, mode="trunk", stochastic_layers=1, seed=0)
    assert trunk.rates["embedding"] == 0.0 and trunk.rates["hidden"] == 0.1  # trunk never samples the embeddings


def test_placeholder_becomes_dropout_and_is_restored():
    model = build("modernbert")
    placeholder = model.model.layers[0].attn.out_drop
    assert isinstance(placeholder, nn.Identity)
    with mc_dropout(model, "hidden=0.2") as active, per_site_applications(model) as counts, torch.no_grad():
        model(**tiny_inputs(model))
        assert isinstance(model.model.layers[0].attn.out_drop, nn.Dropout)
    assert counts.get("model.layers.0.attn.out_drop") == 1
    assert "model.layers.0.attn.out_drop" in {s.name for s in active}
    assert model.model.layers[0].attn.out_drop is placeholder


def test_layerdrop_and_checkpointing_neutralised():
    model = build("bart", encoder_layerdrop=0.9, decoder_layerdrop=0.9)
    model.gradient_checkpointing_enable()
    inputs = tiny_inputs(model)
    attention = [s.name for s in inspect_dropout(model) if s.role == "attention"]
    before = snapshot(model)
    with mc_dropout(model, ALL_AT_0_1), torch.no_grad():
        for _ in range(5):  # with layerdrop 0.9 live, some layer would be skipped in 5 passes (p > 0.999)
            with per_site_applications(model) as counts:
                model(**inputs)
            assert [counts.get(name) for name in attention] == [1] * len(attention)
        assert not any(m.__dict__.get("gradient_checkpointing") for m in model.modules())
    assert snapshot(model) == before
    assert model.model.encoder.layerdrop == 0.9


def test_batch_norm_stays_in_eval_and_error_restores():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    stats = model[1].running_mean.clone()
    x = torch.randn(16, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with mc_dropout(model), torch.no_grad():
            assert model[2].training and not model[1].training
            a, b = model(x), model(x)
            assert not torch.equal(a, b)
            raise RuntimeError("boom")
    assert torch.equal(model[1].running_mean, stats)  # no batch-norm update
    assert all(m.training for m in model.modules())


def test_no_active_site_warns():
    model = build("llama")  # built with attention_dropout = 0 and no other dropout
    with pytest.warns(UserWarning, match="no dropout site"):
        with mc_dropout(model):
            pass


# --- mc_predict: statistics against a reference ----------------------------------------------------------------------


def reference_samples(model, inputs, samples, seed, spec=None, frozen=()):
    """T forwards inside mc_dropout, ``frozen`` sub-modules put back into eval, from ``seed``."""
    with mc_dropout(model, spec), torch.no_grad():
        for module in frozen:
            module.eval()
        torch.manual_seed(seed)
        logits = torch.stack([model(**inputs).logits for _ in range(samples)])
    return logits.double().softmax(-1).numpy()  # (T, B, C)


def reference_stats(probs: np.ndarray) -> dict:
    T, B, C = probs.shape
    out = {k: np.zeros(B) for k in ("pe", "ee", "vr")}
    out["mean"], out["std"] = np.zeros((B, C)), np.zeros((B, C))
    for i in range(B):
        rows = probs[:, i, :]
        mean = rows.sum(0) / T
        out["mean"][i] = mean
        out["std"][i] = np.sqrt(((rows - mean) ** 2).sum(0) / T)
        out["pe"][i] = -sum(p * np.log(p) for p in mean if p > 0)
        out["ee"][i] = sum(-sum(p * np.log(p) for p in row if p > 0) for row in rows) / T
        votes = np.bincount(rows.argmax(1), minlength=C)
        out["vr"][i] = 1 - votes.max() / T
    return out


def test_loop_statistics_equal_reference():
    model = build("bert")
    inputs = tiny_inputs(model, batch_size=4)
    inputs["labels"] = torch.tensor([0, 1, 2, 1])
    pred = mc_predict(model, inputs, samples=7, seed=3, keep_samples=True)
    assert isinstance(pred, ClassificationPrediction) and not hasattr(pred, "variance")
    probs = reference_samples(model, {k: v for k, v in inputs.items() if k != "labels"}, 7, seed=3)
    np.testing.assert_allclose(pred.sample_outputs, probs.transpose(1, 0, 2), atol=1e-12)
    ref = reference_stats(probs)
    np.testing.assert_allclose(pred.mean_probs, ref["mean"], atol=1e-12)
    np.testing.assert_allclose(pred.std, ref["std"], atol=1e-12)
    np.testing.assert_allclose(pred.predictive_entropy, ref["pe"], atol=1e-12)
    np.testing.assert_allclose(pred.expected_entropy, ref["ee"], atol=1e-12)
    np.testing.assert_allclose(pred.mutual_information, ref["pe"] - ref["ee"], atol=1e-12)
    np.testing.assert_allclose(pred.variation_ratio, ref["vr"], atol=1e-12)
    assert (pred.mutual_information >= -1e-12).all()
    np.testing.assert_array_equal(pred.prediction, ref["mean"].argmax(1))
    np.testing.assert_array_equal(pred.labels, [0, 1, 2, 1])
    with torch.no_grad():
        det = model.eval()(**{k: v for k, v in inputs.items() if k != "labels"}).logits.double().softmax(-1)
    np.testing.assert_allclose(pred.deterministic_probs, det.numpy(), atol=1e-12)
    np.testing.assert_allclose(pred.scores("deterministic_entropy"), [-sum(p * np.log(p) for p in row)
                                                                      for row in det.numpy()], atol=1e-12)
    summary = pred.to_dict()
    assert summary["n"] == 4 and set(summary["mc"]) >= {"accuracy", "ece", "nll"}
    assert summary["mean_mutual_information"] == pytest.approx(pred.mutual_information.mean())


def test_regression_mean_and_variance():
    from transformers import AutoModelForSequenceClassification

    from dropout_tune.testing import tiny_config

    config = tiny_config("bert")
    config.num_labels = 1
    model = AutoModelForSequenceClassification.from_config(config)
    inputs = tiny_inputs(model, batch_size=3)
    pred = mc_predict(model, inputs, samples=6, seed=0, keep_samples=True)
    assert isinstance(pred, RegressionPrediction) and not hasattr(pred, "mean_probs")
    assert pred.task == "regression" and pred.sample_outputs.shape == (3, 6)
    assert pred.scores() is pred.variance and pred.to_dict()["mean_variance"] == pytest.approx(pred.variance.mean())
    np.testing.assert_allclose(pred.mean, pred.sample_outputs.mean(1), atol=1e-12)
    np.testing.assert_allclose(pred.variance, pred.sample_outputs.var(1), atol=1e-12)
    assert (pred.variance > 0).all()


@pytest.mark.parametrize("max_batch", [1, 2, 5, 7, 64])
def test_replicate_layout_keeps_examples_apart(max_batch):
    # With every rate at 0 every sample equals its own example's deterministic output: a layout bug (rows of one
    # example attributed to another, copies misaligned when chunked) shows up as a mismatch.
    model = build("bert")
    inputs = tiny_inputs(model, batch_size=5, seed=1)
    with pytest.warns(UserWarning, match="no dropout site"):
        pred = mc_predict(model, inputs, samples=3, mode="replicate", spec=0.0, max_batch=max_batch,
                          keep_samples=True)
    for t in range(3):
        np.testing.assert_allclose(pred.sample_outputs[:, t], pred.deterministic_probs, atol=1e-6)
    assert len(set(np.round(pred.deterministic_probs[:, 0], 6))) == 5  # the examples really differ


def test_replicate_one_copy_per_forward_is_loop_and_more_copies_sample_the_same_distribution():
    model = build("bert", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    inputs = tiny_inputs(model, batch_size=2)
    loop = mc_predict(model, inputs, samples=5, seed=11, keep_samples=True)
    one_copy = mc_predict(model, inputs, samples=5, mode="replicate", max_batch=2, seed=11, keep_samples=True)
    np.testing.assert_array_equal(loop.sample_outputs, one_copy.sample_outputs)
    many = mc_predict(model, inputs, samples=5, mode="replicate", max_batch=10, seed=11, keep_samples=True)
    assert not np.array_equal(many.sample_outputs, loop.sample_outputs)  # other masks ...
    assert len({tuple(np.round(row, 8)) for row in many.sample_outputs[0]}) == 5  # ... independent per copy
    big_loop = mc_predict(model, inputs, samples=400, seed=1)
    big_rep = mc_predict(model, inputs, samples=400, mode="replicate", max_batch=200, seed=2)
    spread = big_loop.std.max()
    assert spread > 1e-3
    # ... from the same distribution: means agree to a few standard errors
    np.testing.assert_allclose(big_rep.mean_probs, big_loop.mean_probs, atol=6 * spread / np.sqrt(400))
    np.testing.assert_allclose(big_rep.std, big_loop.std, rtol=0.25)


# --- trunk ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", trunk_families())
def test_trunk_with_all_layers_equals_loop(family):
    # Trunk always treats the embeddings as deterministic, so the loop reference turns embedding dropout off;
    # with that the random streams line up and the samples are bitwise equal.
    model = build(family)
    inputs = tiny_inputs(model, batch_size=3)
    n_layers = len(model.base_model.get_submodule(trunk_layers_path(family)))
    loop = mc_predict(model, inputs, samples=3, spec=NO_EMBEDDING, seed=5, keep_samples=True)
    trunk = mc_predict(model, inputs, samples=3, mode="trunk", stochastic_layers=n_layers, spec=NO_EMBEDDING,
                       max_batch=3, seed=5, keep_samples=True)
    np.testing.assert_array_equal(trunk.sample_outputs, loop.sample_outputs)
    np.testing.assert_array_equal(trunk.deterministic_probs, loop.deterministic_probs)
    assert not np.array_equal(trunk.sample_outputs[:, 0], trunk.sample_outputs[:, 1])


@pytest.mark.parametrize("family", ["bert", "distilbert", "deberta-v2", "gpt2", "llama", "vit"])
def test_trunk_top_layer_equals_loop_with_bottom_frozen(family):
    model = build(family, num_hidden_layers=3) if family not in ("distilbert", "gpt2") else build(family)
    inputs = tiny_inputs(model, batch_size=2)
    layers = model.base_model.get_submodule(trunk_layers_path(family))
    apply_dropout(model, ALL_AT_0_1, warn_missing=False)  # so injected sites (llama) exist to be frozen below
    frozen = list(layers[:-1]) + [m for n, m in model.named_modules()
                                  if n.endswith(("embeddings", ".drop", ".embedding_dropout"))]
    probs = reference_samples(model, inputs, 4, seed=7, spec=ALL_AT_0_1, frozen=frozen)
    trunk = mc_predict(model, inputs, samples=4, mode="trunk", stochastic_layers=1, spec=ALL_AT_0_1,
                       max_batch=2, seed=7, keep_samples=True)
    np.testing.assert_allclose(trunk.sample_outputs, probs.transpose(1, 0, 2), atol=1e-6)
    assert snapshot(model)["forward_overrides"] == []  # the stubs are gone


def test_trunk_replicated_layout_and_bottom_really_skipped():
    model = build("bert", num_hidden_layers=4)
    inputs = tiny_inputs(model, batch_size=3, seed=2)
    calls = {"bottom": 0, "top": 0}
    layers = model.bert.encoder.layer
    layers[0].intermediate.register_forward_hook(lambda *a: calls.__setitem__("bottom", calls["bottom"] + 1))
    layers[3].intermediate.register_forward_hook(lambda *a: calls.__setitem__("top", calls["top"] + 1))
    with pytest.warns(UserWarning):
        pred = mc_predict(model, inputs, samples=4, mode="trunk", stochastic_layers=1, spec=0.0, max_batch=6,
                          keep_samples=True)
    assert calls == {"bottom": 1, "top": 1 + 2}  # bottom once (deterministic pass); top: 1 + 4 samples / 2 copies
    for t in range(4):
        np.testing.assert_allclose(pred.sample_outputs[:, t], pred.deterministic_probs, atol=1e-6)


def test_trunk_refuses_uncovered_families_and_bad_k():
    with pytest.raises(ValueError, match="does not cover model type 'albert'"):
        mc_predict(build("albert"), tiny_inputs(build("albert")), samples=2, mode="trunk", stochastic_layers=1)
    model = build("bert")
    with pytest.raises(ValueError, match=r"stochastic_layers: expected an integer in \[1, 2\]"):
        mc_predict(model, tiny_inputs(model), samples=2, mode="trunk", stochastic_layers=3)
    with pytest.raises(ValueError, match="stochastic_layers"):
        mc_predict(model, tiny_inputs(model), samples=2, mode="trunk")
    with pytest.raises(ValueError, match="mode"):
        mc_predict(model, tiny_inputs(model), samples=2, mode="fast")
    with pytest.raises(ValueError, match="samples"):
        mc_predict(model, tiny_inputs(model), samples=0)
    with pytest.raises(ValueError, match="logits"):
        mc_predict(build("whisper"), tiny_inputs(build("whisper")), samples=2, spec=0.1)


# --- data forms, PEFT, several processes ------------------------------------------------------------------------------


def test_dataset_and_dataloader_inputs_keep_order_and_padding():
    import datasets

    model = build("bert")
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 99, (int(n),), generator=g).tolist(), "label": i % 3, "text": "x"}
            for i, n in enumerate([5, 8, 3, 7, 6])]
    dataset = datasets.Dataset.from_list(rows)
    pred = mc_predict(model, dataset, samples=2, batch_size=2, seed=0)
    np.testing.assert_array_equal(pred.labels, [0, 1, 2, 0, 1])
    with torch.no_grad():
        model.eval()
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits.double().softmax(-1)[0].numpy() for r in rows]
    np.testing.assert_allclose(pred.deterministic_probs, np.stack(alone), atol=1e-5)  # padding is masked
    loader = torch.utils.data.DataLoader(dataset.select_columns(["input_ids", "label"]), batch_size=5,
                                         collate_fn=lambda b: {"input_ids": torch.tensor(
                                             [r["input_ids"] + [0] * (8 - len(r["input_ids"])) for r in b]),
                                             "attention_mask": torch.tensor(
                                             [[1] * len(r["input_ids"]) + [0] * (8 - len(r["input_ids"])) for r in b]),
                                             "labels": torch.tensor([r["label"] for r in b])})
    from_loader = mc_predict(model, loader, samples=2, seed=0)
    np.testing.assert_allclose(from_loader.deterministic_probs, pred.deterministic_probs, atol=1e-6)


def test_peft_model_includes_lora_sites():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build("bert"), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["query"],
                                                     task_type="SEQ_CLS"))
    inputs = tiny_inputs(model)
    lora_sites = [s.name for s in inspect_dropout(model) if s.role == "lora"]
    assert len(lora_sites) == 2
    before = snapshot(model)
    with mc_dropout(model) as active, per_site_applications(model) as counts, torch.no_grad():
        model(**inputs)
    assert {s.role for s in active} >= {"lora", "attention"}
    assert all(counts.get(name) == 1 for name in lora_sites)
    assert snapshot(model) == before
    loop = mc_predict(model, inputs, samples=3, spec=NO_EMBEDDING, seed=1, keep_samples=True)
    trunk = mc_predict(model, inputs, samples=3, mode="trunk", stochastic_layers=2, spec=NO_EMBEDDING,
                       max_batch=2, seed=1, keep_samples=True)
    np.testing.assert_array_equal(trunk.sample_outputs, loop.sample_outputs)


def test_peft_placeholder_lora_dropout_switched_on_by_spec():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build("bert"), LoraConfig(r=4, lora_dropout=0.0, target_modules=["query"],
                                                     task_type="SEQ_CLS"))
    with mc_dropout(model, "lora=0.2") as active, per_site_applications(model) as counts, torch.no_grad():
        model(**tiny_inputs(model))
    assert {s.role for s in active} == {"lora"} and sum(counts.values()) == 2
    assert all(s.kind == "placeholder" for s in inspect_dropout(model) if s.role == "lora")


def test_progress_bar_counts_every_sampled_pass(monkeypatch):
    import datasets
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, total=None, **kwargs):
            self.total, self.n, self.kwargs, self.closed = total, 0, kwargs, False
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    model = build("bert")
    rows = [{"input_ids": list(range(3, 3 + n)), "label": 0} for n in (4, 6, 5, 7, 3)]
    dataset = datasets.Dataset.from_list(rows)
    # 3 batches of <= 2 rows; max_batch=1 splits each batch into single rows, sampled one copy per forward
    mc_predict(model, dataset, samples=4, batch_size=2, mode="replicate", max_batch=1, progress=True)
    assert len(bars) == 1
    bar = bars[0]
    assert bar.total == 3 * 4 and bar.n == 3 * 4 and bar.closed
    assert bar.kwargs["disable"] is None  # tqdm's own rule: shown on a terminal, silent in logs
    mc_predict(model, dataset, samples=2, batch_size=2)
    assert len(bars) == 1  # no bar unless asked


def test_rows_for_budget_scales():
    model = build("bert")
    small, big = tiny_inputs(model, seq_len=8), tiny_inputs(model, seq_len=32)
    assert rows_for_budget(model, small, 64) > rows_for_budget(model, big, 64) >= 1
    assert rows_for_budget(model, small, 128) == pytest.approx(2 * rows_for_budget(model, small, 64), abs=1)


DIST_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import datasets, torch
    torch.set_num_threads(1)
    from dropout_tune.distributed import accelerator_session
    from dropout_tune.mc import mc_predict
    from dropout_tune.testing import tiny_model
    # the session ends the gloo group before exit: one alive at exit aborted a rank now and then (SIGABRT,
    # "terminate called without an active exception")
    with accelerator_session(cpu=True) as accelerator:
        model = tiny_model("bert")
        g = torch.Generator().manual_seed(0)
        rows = [{"input_ids": torch.randint(3, 99, (8,), generator=g).tolist(), "label": i} for i in range(11)]
        pred = mc_predict(model, datasets.Dataset.from_list(rows), samples=3, batch_size=2, accelerator=accelerator,
                          seed=0)
    if accelerator.is_main_process:
        json.dump({"processes": accelerator.num_processes, "labels": pred.labels.tolist(),
                   "det": pred.deterministic_probs.tolist(), "group_alive": torch.distributed.is_initialized()},
                  open(sys.argv[1], "w"))
""")


@pytest.mark.distributed
def test_two_processes_count_every_example_once(tmp_path, free_port, run_process):
    script = tmp_path / "dist.py"
    script.write_text(DIST_SCRIPT)
    out = tmp_path / "out.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run_process([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
                 script, out], env=env, timeout=240)
    import json

    result = json.loads(out.read_text())
    assert result["processes"] == 2 and result["group_alive"] is False  # ended before exit
    assert result["labels"] == list(range(11))  # 11 examples over 2 processes x batch 2: padding dropped
    model = build("bert").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(3, 99, (8,), generator=g) for _ in range(11)])
    with torch.no_grad():
        det = model(input_ids=ids).logits.double().softmax(-1).numpy()
    np.testing.assert_allclose(result["det"], det, atol=1e-6)


def _one_rank_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    return dist


def test_ending_the_process_group_leaves_no_gloo_threads_for_exit(tmp_path, monkeypatch):
    from dropout_tune.distributed import accelerator_session, end_process_group

    dist = _one_rank_group(tmp_path)
    end_process_group()
    assert not dist.is_initialized()
    end_process_group()  # nothing left to end: no error
    monkeypatch.setenv("WORLD_SIZE", "1")
    with accelerator_session() as accelerator:
        assert accelerator is None


# --- the mc-eval command ----------------------------------------------------------------------------------------------


def write_task(directory, texts, labels):
    import csv

    directory.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        with open(directory / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels))
    return directory


def test_mc_eval_command_on_a_run_directory(tmp_path, capsys):
    import json

    from transformers import AutoTokenizer

    from dropout_tune import resolve_model_path
    from dropout_tune.cli import main

    run_dir = tmp_path / "run"
    build("bert", vocab_size=30522).save_pretrained(run_dir / "model")
    AutoTokenizer.from_pretrained(resolve_model_path("minilm")).save_pretrained(run_dir / "model")
    words = ["good film", "bad plot", "great acting", "dull", "a fine movie", "boring and long", "superb", "awful"]
    task = write_task(tmp_path / "task", words * 2, [0, 1, 2, 1, 0, 1, 2, 0] * 2)
    ood = write_task(tmp_path / "ood", ["the cat sat on the mat", "stocks fell sharply", "rain is expected"] * 3,
                     [0, 1, 0] * 3)
    (run_dir / "recipe.yaml").write_text(f"name: run\ndata:\n  task: {task}\n  max_length: 16\n")
    code = main(["mc-eval", str(run_dir), "-T", "3", "--mode", "trunk", "--stochastic-layers", "1",
                 "--ood-task", str(ood), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| ECE |" in printed and "OOD AUROC" in printed
    result = json.loads((run_dir / "mc_eval.json").read_text())
    assert result["n"] == 16 and result["mode"] == "trunk" and result["stochastic_layers"] == 1
    assert set(result["mc"]) >= {"accuracy", "nll", "brier", "ece", "mce", "adaptive_ece"}
    assert set(result["deterministic"]) == set(result["mc"])
    assert result["ood"]["n"] == 9 and 0.0 <= result["ood"]["auroc"]["mutual_information"] <= 1.0
    assert (run_dir / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_mc_eval_command_errors_are_one_line(tmp_path, capsys):
    from dropout_tune.cli import main

    assert main(["mc-eval", str(tmp_path / "missing_dir/")]) == 2
    assert "does not exist" in capsys.readouterr().err  # loading.resolve_model_path names the path
    assert main(["mc-eval", "minilm"]) == 2
    assert "--task: required" in capsys.readouterr().err


def test_mc_eval_help_is_plain_text(capsys):
    from dropout_tune.cli import main

    with pytest.raises(SystemExit):
        main(["mc-eval", "--help"])
    out = capsys.readouterr().out
    assert "RUN_DIR_OR_MODEL" in out and "--spec" in out
    for markup in ("``", ":mod:", ":func:", ":class:"):
        assert markup not in out


@pytest.mark.parametrize("argv,message", [
    (["--spec", "hidden=2"], "--spec: hidden: dropout rate 2.0 is outside [0, 1)"),
    (["--spec", "dropout=0.1"], "--spec: unknown dropout role 'dropout'"),
    (["--ood-task", "no_such_task"], "--ood-task:"),
    (["--max-examples", "0"], "--max-examples: expected a positive integer, got 0"),
    (["--samples", "0"], "--samples: expected a positive integer, got 0"),
    (["--mode", "loop", "--stochastic-layers", "1"], "stochastic_layers: only used with mode='trunk'"),
    (["--device", "cuda"], "--device cuda: CUDA is not available"),
    (["--device", "gpu"], "--device gpu: not a torch device"),
    (["--output", "{file}"], "not a directory"),
    (["--output", "{file}/sub"], "not a directory"),
    (["--output", "{readonly}/sub"], "not writable"),
])
def test_mc_eval_bad_input_is_one_line_before_the_model_loads(argv, message, tmp_path, monkeypatch, capsys):
    import dropout_tune.files
    import dropout_tune.loading
    from dropout_tune.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(dropout_tune.loading, "load_model", refuse)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "readonly").mkdir()
    real_access = os.access  # root may write anywhere, so "read-only" is what os.access reports

    def access(path, mode):
        return False if str(path) == str(tmp_path / "readonly") else real_access(path, mode)

    monkeypatch.setattr(dropout_tune.files.os, "access", access)
    argv = [a.format(file=tmp_path / "file", readonly=tmp_path / "readonly") for a in argv]
    code = main(["mc-eval", "minilm", "--task", "rotten_tomatoes", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "mc_eval").exists()  # nothing written


def test_off_after_recipe_both_paths_sample_the_nominal_rates(tmp_path, capsys):
    # The schedule switches hidden and attention dropout off halfway; MC evaluation must still sample them, at
    # their peak rates, in training (recipe mc_eval) and in `dropout-tune mc-eval RUN_DIR` alike.
    import json

    from dropout_tune.cli import main
    from dropout_tune.recipe import Recipe
    from dropout_tune.testing import save_tiny_text_model, write_toy_text_task
    from dropout_tune.train import train

    save_tiny_text_model(tmp_path / "model")
    write_toy_text_task(tmp_path / "data", sizes=(16, 8, 12))
    run_dir = tmp_path / "run"
    recipe = Recipe.from_dict({
        "name": "off", "model": {"name": str(tmp_path / "model")},
        "data": {"task": str(tmp_path / "data"), "max_length": 16, "max_eval": 7},
        "dropout": {"schedule": "hidden=off_after:0.2:at=0.5,attention=off_after:0.3:at=0.5"},
        "training": {"max_steps": 2, "batch_size": 8, "eval_strategy": "no", "output_dir": str(run_dir)},
        "mc_eval": {"enabled": True, "samples": 4}})
    metrics = train(recipe)
    assert metrics["final_dropout"]["hidden"] == 0.0 and metrics["final_dropout"]["attention"] == 0.0
    nominal = {"embedding": 0.1, "attention": 0.3, "hidden": 0.2, "classifier": 0.1}
    in_training = json.loads((run_dir / "mc_eval.json").read_text())
    assert in_training["rates"] == nominal == metrics["mc_eval"]["rates"]
    assert in_training["n"] == 7 and in_training["samples"] == 4  # the run's data.max_eval and mc_eval.samples
    assert in_training["mean_mutual_information"] > 0

    assert main(["mc-eval", str(run_dir), "-o", str(tmp_path / "again"), "--device", "cpu"]) == 0
    assert "rates sampled: embedding=0.1, attention=0.3, hidden=0.2, classifier=0.1" in capsys.readouterr().out
    again = json.loads((tmp_path / "again" / "mc_eval.json").read_text())
    assert again["rates"] == nominal and again["n"] == 7 and again["samples"] == 4
    assert again["mean_mutual_information"] > 0
    # the same examples, rates and seed: the same numbers
    for key in ("mc", "deterministic"):
        for name, value in in_training[key].items():
            assert again[key][name] == pytest.approx(value, abs=1e-9), (key, name)

    assert main(["mc-eval", str(run_dir), "-o", str(tmp_path / "explicit"), "--device", "cpu",
                 "--spec", "attention=0.05", "--max-examples", "3"]) == 0
    explicit = json.loads((tmp_path / "explicit" / "mc_eval.json").read_text())
    assert explicit["rates"] == {"embedding": 0.0, "attention": 0.05, "hidden": 0.0, "classifier": 0.0}
    assert explicit["n"] == 3
