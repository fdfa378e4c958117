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

from dropout_tune.mc import TRUNK_LAYERS, mc_dropout, mc_predict, rows_for_budget, trace_dropout
from dropout_tune.patching import apply_dropout, inspect_dropout, inspect_stochastic_depth
from dropout_tune.spec import DropoutSpec
from dropout_tune.testing import FAMILIES, tiny_inputs, tiny_model

torch.set_num_threads(1)

ALL_AT_0_1 = DropoutSpec.uniform(0.1)
#: every role at 0.1 but the embedding, which trunk mode treats as part of the deterministic trunk.
NO_EMBEDDING = DropoutSpec.from_dict({"all": 0.1, "embedding": 0.0})
#: families whose tiny model can be built with SDPA attention.
SDPA_FAMILIES = [f for f in FAMILIES if f not in ("deberta-v2", "gemma2")]  # transformers has no SDPA path for these


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
    p > 0, or SDPA with dropout_p > 0), attributing each to the innermost enclosing site: the dropout module itself
    (kinds module / module_p) or the owner whose forward reads the rate (attribute)."""
    counts: dict[str, int] = {}
    stack: list[str] = []
    handles = []
    for site in inspect_dropout(model):
        if site.kind == "placeholder":
            continue
        owner = model.get_submodule(site.owner)
        module = owner._modules[site.attr] if site.kind in ("module", "module_p") else owner
        if site.kind == "module_p":
            module = owner  # the attention code reads `.p` inside the owner; the module itself is not called
        handles.append(module.register_forward_pre_hook(lambda m, a, name=site.name: stack.append(name) and None))
        handles.append(module.register_forward_hook(lambda m, a, o: stack.pop() and None))  # None: keep the output

    def record():
        name = stack[-1] if stack else "<outside any site>"
        counts[name] = counts.get(name, 0) + 1

    try:
        with trace_dropout(on_apply=record):
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
    assert pred.task == "regression" and pred.sample_outputs.shape == (3, 6)
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


@pytest.mark.parametrize("family", list(TRUNK_LAYERS))
def test_trunk_with_all_layers_equals_loop(family):
    # Trunk always treats the embeddings as deterministic, so the loop reference turns embedding dropout off;
    # with that the random streams line up and the samples are bitwise equal.
    model = build(family)
    inputs = tiny_inputs(model, batch_size=3)
    n_layers = len(model.base_model.get_submodule(TRUNK_LAYERS[family]))
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
    layers = model.base_model.get_submodule(TRUNK_LAYERS[family])
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
    from accelerate import Accelerator
    from dropout_tune.mc import mc_predict
    from dropout_tune.testing import tiny_model
    accelerator = Accelerator(cpu=True)
    model = tiny_model("bert")
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 99, (8,), generator=g).tolist(), "label": i} for i in range(11)]
    pred = mc_predict(model, datasets.Dataset.from_list(rows), samples=3, batch_size=2, accelerator=accelerator,
                      seed=0)
    if accelerator.is_main_process:
        json.dump({"processes": accelerator.num_processes, "labels": pred.labels.tolist(),
                   "det": pred.deterministic_probs.tolist()}, open(sys.argv[1], "w"))
""")


@pytest.mark.distributed
def test_two_processes_count_every_example_once(tmp_path):
    script = tmp_path / "dist.py"
    script.write_text(DIST_SCRIPT)
    out = tmp_path / "out.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(out)],
                   check=True, env=env, capture_output=True, timeout=240)
    import json

    result = json.loads(out.read_text())
    assert result["processes"] == 2
    assert result["labels"] == list(range(11))  # 11 examples over 2 processes x batch 2: padding dropped
    model = build("bert").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(3, 99, (8,), generator=g) for _ in range(11)])
    with torch.no_grad():
        det = model(input_ids=ids).logits.double().softmax(-1).numpy()
    np.testing.assert_allclose(result["det"], det, atol=1e-6)


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
    assert "neither a run directory" in capsys.readouterr().err
    assert main(["mc-eval", "minilm"]) == 2
    assert "--task: required" in capsys.readouterr().err
