"""Dropout schedules under torch.compile: rates change without recompiling (issue 11).

Graphs are counted with dynamo's ``unique_graphs`` on the "eager" backend (no code generation: fast, and the
count is the same for inductor, which compiles the graphs dynamo hands it).
"""

import copy
import os
import pickle

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from dropout_tune import apply_dropout, current_rates, inspect_dropout, restore_dropout
from dropout_tune.callbacks import DropoutScheduler
from dropout_tune.compiled_rates import RateBank, TensorRateMode, dropout_at_rate, make_compile_ready, original_class
from dropout_tune.testing import tiny_inputs, tiny_model

STEPS = 30


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _logits(model, inputs):
    out = model(**inputs)
    return (out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state).detach()


# (model type, attention implementation): BERT has module and module_p sites (attention reads self.dropout.p),
# GPT-2 module and module_p, Llama an attribute site (attention_dropout, a float handed to SDPA); ModernBERT adds
# placeholder sites (nn.Identity, built because its rate was 0).
CASES = [("bert", "sdpa"), ("gpt2", "eager"), ("llama", "sdpa"), ("modernbert", "eager")]


@pytest.mark.parametrize("model_type,attn", CASES, ids=[f"{m}-{a}" for m, a in CASES])
def test_linear_schedule_compiles_at_most_three_graphs(model_type, attn):
    model = tiny_model(model_type, attn_implementation=attn).train()
    inputs = tiny_inputs(model)
    compiled = torch.compile(model, backend="eager")
    _logits(compiled, inputs)  # compiled and run before the first rate change: the worst case
    scheduler = DropoutScheduler(model, "linear:0.1:0", total_steps=STEPS - 1)  # the last step runs at 0
    kinds = {site.kind for site in inspect_dropout(model) if site.p > 0}
    for step in range(STEPS):
        first = _logits(compiled, inputs)
        if step in (0, STEPS - 2):
            assert not torch.equal(first, _logits(compiled, inputs)), f"dropout should be live at step {step}"
        if step < STEPS - 1:
            scheduler.step()
    assert _graphs() <= 3, f"{_graphs()} graphs for a {STEPS}-step schedule"
    assert set(current_rates(model).values()) == {0.0}
    assert torch.equal(first, _logits(compiled, inputs))
    model.eval()
    assert torch.equal(first, _logits(compiled, inputs)), "at rate 0 train mode should equal eval mode"
    if model_type == "llama":
        assert "injected" in kinds  # Llama's hidden / embedding / activation sites are injected by the schedule
    if model_type == "modernbert":
        assert "placeholder" in {site.kind for site in inspect_dropout(tiny_model(model_type))}
        assert "module" in kinds  # the placeholders became (compile-ready) dropout
    assert torch.compiler.is_compiling() is False


def test_schedule_set_before_compiling_costs_one_graph_for_all_zero():
    model = tiny_model("bert", attn_implementation="sdpa").train()
    inputs = tiny_inputs(model)
    scheduler = DropoutScheduler(model, "hidden=off_after:0.1:at=0.5,attention=linear:0.1:0", total_steps=9)
    compiled = torch.compile(model, backend="eager")
    for _ in range(10):
        _logits(compiled, inputs)
        scheduler.step()
    assert _graphs() == 2


class _Holder(nn.Module):
    """An owner of a float rate read by its forward: what Llama attention and BART layers do."""

    def __init__(self, rate: float):
        super().__init__()
        self.attention_dropout = rate
        self.act_dropout = rate

    def forward(self, x):
        scores = nn.functional.dropout(x, p=self.attention_dropout, training=self.training)
        hidden = nn.functional.scaled_dot_product_attention(x, x, x, dropout_p=self.attention_dropout)
        return scores, hidden, nn.functional.dropout(x, p=self.act_dropout, training=self.training)


@pytest.mark.parametrize("kind", ["module", "attribute"])
def test_strength_follows_the_rate_under_compile(kind):
    bank = RateBank()
    if kind == "module":
        module = make_compile_ready(nn.Dropout(0.5), ("p",), bank)
    else:
        module = make_compile_ready(_Holder(0.5), ("attention_dropout", "act_dropout"), bank)
    compiled = torch.compile(module, backend="eager")
    x = torch.ones(64, 1, 64, 64)
    for rate in (0.5, 0.2, 0.05, 0.3):
        if kind == "module":
            module.p = rate
            outs = [compiled(x)]
        else:
            module.attention_dropout = module.act_dropout = rate
            scores, hidden, act = compiled(x)
            # SDPA over all-ones: dropout of the attention weights shows in the output's spread around 1
            assert hidden.mean().item() == pytest.approx(1.0, abs=0.01)
            outs = [scores, act]
        for out in outs:
            assert (out == 0).float().mean().item() == pytest.approx(rate, abs=0.01)
            assert out.mean().item() == pytest.approx(1.0, abs=0.02)  # kept values are scaled by 1 / (1 - rate)
    assert _graphs() == 1


def test_mode_rewrites_only_tensor_rates():
    x = torch.randn(2, 3, 5, 4)
    with TensorRateMode():
        torch.manual_seed(0)
        floats = nn.functional.dropout(x, p=0.3, training=True)
        rewritten = nn.functional.scaled_dot_product_attention(x, x, x, dropout_p=torch.tensor(0.0), is_causal=True)
    torch.manual_seed(0)
    assert torch.equal(floats, nn.functional.dropout(x, p=0.3, training=True))
    expected = nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
    torch.testing.assert_close(rewritten, expected)
    assert torch.equal(dropout_at_rate(x, torch.tensor(1.0)), torch.zeros_like(x))


def test_compile_ready_model_is_the_same_model_in_eager_mode(tmp_path):
    model = tiny_model("llama")
    reference = tiny_model("llama")
    before = repr(model), sorted(model.state_dict())
    report = apply_dropout(model, "attention=0.2", warn_missing=False)  # no injected role: the model looks the same
    apply_dropout(reference, "attention=0.2", warn_missing=False)
    assert (repr(model), sorted(model.state_dict())) == before
    attention = model.model.layers[0].self_attn
    assert type(attention).__name__ == "LlamaAttention" and attention.attention_dropout == 0.2
    assert [s.kind for s in inspect_dropout(model)] == ["attribute", "attribute"]
    # copies come back as the original classes with the same rates, and behave the same
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(copied.model.layers[0].self_attn) is original_class(attention)
        assert current_rates(copied) == current_rates(model)
        inputs = tiny_inputs(model)
        torch.manual_seed(0)
        expected = _logits(model.train(), inputs)
        torch.manual_seed(0)
        assert torch.equal(_logits(copied.train(), inputs), expected)
    model.to(torch.float64)
    assert attention._dropout_tune_rate_attention_dropout.dtype == torch.float64
    restore_dropout(model, report)
    assert attention.attention_dropout == 0.0 and not model._dropout_tune_bank.live


@pytest.fixture
def _no_leaked_dynamo_env():
    # TrainingArguments(torch_compile=True) exports ACCELERATE_DYNAMO_*: undo it so later tests do not compile
    names = [name for name in os.environ if name.startswith("ACCELERATE_DYNAMO_")]
    saved = {name: os.environ[name] for name in names}
    yield
    for name in [name for name in os.environ if name.startswith("ACCELERATE_DYNAMO_")]:
        del os.environ[name]
    os.environ.update(saved)


def test_trainer_with_torch_compile_follows_a_schedule_without_recompiling(tmp_path, _no_leaked_dynamo_env):
    from transformers import Trainer, TrainingArguments

    from dropout_tune.callbacks import DropoutScheduleCallback

    model = tiny_model("bert", num_labels=2, attn_implementation="sdpa")
    model.config.problem_type = "single_label_classification"  # else BERT sets it in its first forward: a recompile
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long), "labels": i % 2}
            for i, ids in enumerate(torch.randint(3, 99, (32, 8), generator=g))]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4, use_cpu=True,
                             report_to="none", save_strategy="no", torch_compile=True,
                             torch_compile_backend="eager", logging_steps=1)
    callback = DropoutScheduleCallback("linear:0.1:0")
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    trainer.train()
    rates = [entry["dropout/hidden"] for entry in trainer.state.log_history if "dropout/hidden" in entry]
    assert rates == pytest.approx([0.1 * (1 - step / 8) for step in range(8)])
    assert _graphs() == 1  # linear 0.1 -> 0 never reaches 0 within the run: one graph for every rate


def test_recipe_torch_compile_reaches_the_trainer(tmp_path, _no_leaked_dynamo_env):
    from dropout_tune.recipe import Recipe
    from dropout_tune.testing import save_tiny_text_model, write_toy_text_task
    from dropout_tune.train import build_trainer

    save_tiny_text_model(tmp_path / "model")
    write_toy_text_task(tmp_path / "data", sizes=(8, 4, 4))
    data = {"name": "toy", "model": {"name": str(tmp_path / "model")}, "data": {"task": str(tmp_path / "data")},
            "training": {"output_dir": str(tmp_path / "run")}}
    assert build_trainer(Recipe.from_dict(data)).trainer.args.torch_compile is False
    compiled = build_trainer(Recipe.from_dict(data, overrides=["training.torch_compile=true"]))
    assert compiled.trainer.args.torch_compile is True
    with pytest.raises(ValueError, match="torch_compile"):
        Recipe.from_dict(data, overrides=["training.torch_compile=sometimes"])
