"""Model lookup: an uncached hub id fails at once, naming the id, when the hub cannot be reached."""

import pytest

from dropout_tune.loading import load_model, resolve_model_path


def test_an_uncached_hub_id_offline_fails_before_any_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"model 'no-such-org/no-such-model' is not a local directory .*"
                                                r"HF_HUB_OFFLINE is set"):
        load_model("no-such-org/no-such-model", num_labels=2)  # what train and mc-eval call


def test_an_uncached_hub_id_with_the_hub_unreachable_fails_naming_the_endpoint(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(FileNotFoundError, match=r"'no-such-org/no-such-model' .* the hub \(http://127.0.0.1:9\) is "
                                                r"unreachable"):
        resolve_model_path("no-such-org/no-such-model")


def test_local_and_embedded_models_need_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    assert resolve_model_path("model") == "model"  # a relative directory is not taken for a hub id
    assert resolve_model_path("minilm").endswith("model")
    with pytest.raises(FileNotFoundError, match="or a valid hub id"):
        resolve_model_path("no such model")
