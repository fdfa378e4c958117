"""dropout_tune.uncertainty and `dropout-tune uncertainty`: methods, metrics, bootstrap, outputs, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dropout_tune.calibration import calibration_metrics
from dropout_tune.cli import main
from dropout_tune.testing import save_tiny_text_model, tiny_model, write_toy_text_task
from dropout_tune.uncertainty import methods as M
from dropout_tune.uncertainty import runs as R
from dropout_tune.uncertainty import scores as S


# ---- fixtures ------------------------------------------------------------------------------------------------------


def make_run(root: Path, seed: int, task: Path, name: str = "toy", extra: str = "", **model) -> Path:
    run_dir = root / f"run{seed}"
    save_tiny_text_model(run_dir / "model", seed=seed, **model)
    (run_dir / "recipe.yaml").write_text(
        f"name: {name}\ndata:\n  task: {task}\n  max_length: 16\n{extra}training:\n  seed: {seed}\n"
        f"  output_dir: {run_dir}\n")
    return run_dir


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    write_toy_text_task(root / "data", sizes=(40, 24, 30))
    write_toy_text_task(root / "ood", sizes=(10, 10, 12), seed=5)
    runs = [make_run(root, seed, root / "data") for seed in (1, 2)]
    return root, runs


def run_cli(*argv) -> int:
    return main(["uncertainty", *map(str, argv), "--device", "cpu", "-T", "3", "--bootstrap", "40"])


@pytest.fixture(scope="module")
def full_output(toy):
    root, runs = toy
    out = root / "full"
    assert run_cli(*runs, "--ood-task", root / "ood", "-o", out) == 0
    return out


# ---- temperature -----------------------------------------------------------------------------------------------------


def test_temperature_equals_a_direct_minimisation_of_validation_nll():
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 3
    labels = np.where(rng.random(300) < 0.6, logits.argmax(1), rng.integers(0, 4, 300))

    def direct_nll(t):  # an independent NLL: log-sum-exp, on T itself
        z = logits / t
        return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(z)), labels]))

    direct = minimize_scalar(direct_nll, bracket=(0.5, 3.0), tol=1e-10).x
    fitted = M.fit_temperature(logits, labels)
    assert fitted == pytest.approx(direct, rel=1e-3)
    assert fitted > 1.2  # overconfident logits are flattened
    assert M.temperature_nll(logits, labels, fitted) <= M.temperature_nll(logits, labels, 1.0)


def test_the_test_split_never_enters_the_temperature_fit(toy, tmp_path, monkeypatch):
    root, runs = toy
    seen = []
    real = M.fit_temperature

    def recording(logits, labels):
        seen.append((np.array(logits), np.array(labels)))
        return real(logits, labels)

    monkeypatch.setattr(M, "fit_temperature", recording)
    assert run_cli(runs[0], "--methods", "temperature,mc+temperature", "-o", tmp_path / "a") == 0
    saved = np.load(tmp_path / "a" / "predictions.npz")
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0][0], saved["validation_logits"])
    np.testing.assert_array_equal(seen[0][1], saved["validation_labels"])
    np.testing.assert_array_equal(seen[1][0], saved["validation_mc_log_probs"])
    assert len(saved["validation_labels"]) == 24 and len(saved["labels"]) == 30
    first = json.loads((tmp_path / "a" / "uncertainty.json").read_text())["methods"]

    # instrument the split: a different test split (other rows, flipped labels) leaves both temperatures unchanged
    data = tmp_path / "data"
    write_toy_text_task(data, sizes=(40, 24, 30))
    test_csv = data / "test.csv"
    rows = test_csv.read_text().splitlines()
    flipped = [r[:-1] + str(1 - int(r[-1])) for r in rows[1:]]
    test_csv.write_text("\n".join([rows[0]] + flipped[::-1] + flipped[:5]) + "\n")
    run = make_run(tmp_path, 1, data)
    assert run_cli(run, "--methods", "temperature,mc+temperature", "-o", tmp_path / "b") == 0
    second = json.loads((tmp_path / "b" / "uncertainty.json").read_text())["methods"]
    assert second["temperature"]["temperature"] == first["temperature"]["temperature"]
    assert second["mc+temperature"]["temperature"] == first["mc+temperature"]["temperature"]
    assert second["deterministic"]["metrics"]["nll"] != first["deterministic"]["metrics"]["nll"]


# ---- metrics -----------------------------------------------------------------------------------------------------------


def brute_force_aurc(probs, labels):
    """AURC averaged over every ranking that orders confidences descending (ties in every order)."""
    confidence = probs.max(1)
    wrong = probs.argmax(1) != labels
    groups = [list(np.flatnonzero(confidence == c)) for c in sorted(set(confidence.tolist()), reverse=True)]
    values = []
    for orders in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
        order = [i for g in orders for i in g]
        risks = [wrong[order[:k]].mean() for k in range(1, len(order) + 1)]
        values.append(np.mean(risks))
    return float(np.mean(values))


def test_aurc_equals_a_brute_force_computation_with_ties():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.6, 0.4],
                      [0.7, 0.3]])
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    expected = brute_force_aurc(probs, labels)
    assert S.aurc(probs, labels) == pytest.approx(expected, abs=1e-12)
    permuted = np.random.default_rng(1).permutation(len(labels))
    assert S.aurc(probs[permuted], labels[permuted]) == pytest.approx(expected, abs=1e-12)
    coverage, risk = S.risk_coverage(probs, labels)
    assert coverage[-1] == 1.0 and risk[-1] == pytest.approx(np.mean(probs.argmax(1) != labels))


def test_bootstrap_intervals_are_reproducible_under_the_seed():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    a = np.clip(rng.random(80), 0.01, 0.99)
    b = np.clip(a + rng.normal(0, 0.1, 80), 0.01, 0.99)
    pa, pb = np.stack([1 - a, a], 1), np.stack([1 - b, b], 1)

    def intervals(seed):
        rows = S.bootstrap_indices(80, 200, seed)
        da = S.bootstrap_draws(lambda r: S.classification_scores(pa[r], labels[r]), rows)
        db = S.bootstrap_draws(lambda r: S.classification_scores(pb[r], labels[r]), rows)
        return {k: S.interval(db[k] - da[k]) for k in da}

    assert intervals(3) == intervals(3)
    assert intervals(3) != intervals(4)


def test_metrics_in_json_equal_a_recomputation_from_predictions_npz(full_output):
    from sklearn.metrics import roc_auc_score

    result = json.loads((full_output / "uncertainty.json").read_text())
    saved = np.load(full_output / "predictions.npz")
    labels = saved["labels"]
    assert set(result["methods"]) == {"deterministic", "temperature", "mc", "mc+temperature", "ensemble", "laplace"}
    for name, entry in result["methods"].items():
        probs = saved[name]
        assert probs.shape == (30, 2)
        expected = calibration_metrics(probs, labels)
        expected["aurc"] = brute_force_aurc(probs, labels) if len(set(probs.max(1))) > 25 else S.aurc(probs, labels)
        ood = saved[f"ood_{name}"]
        entropy = lambda p: -(p * np.log(p)).sum(1)  # noqa: E731
        expected["ood_auroc"] = roc_auc_score(np.r_[np.zeros(30), np.ones(len(ood))], np.r_[entropy(probs),
                                                                                             entropy(ood)])
        for key, value in entry["metrics"].items():
            assert value == pytest.approx(expected[key], abs=1e-9), (name, key)
        if name != "deterministic":
            for key, diff in entry["difference"].items():
                assert diff["value"] == pytest.approx(value_of(result, name, key) - value_of(result, "deterministic",
                                                                                             key), abs=1e-12)
                assert diff["low"] <= diff["high"]
            assert set(entry["verdict"]) == {"nll", "ece"}
        assert entry["seconds"] > 0
    assert result["methods"]["temperature"]["temperature"] > 0
    assert result["methods"]["laplace"]["prior_precision"] > 0
    for name in ("reliability.png", "risk_coverage.png"):
        assert (full_output / name).read_bytes()[:4] == b"\x89PNG"
    md = (full_output / "uncertainty.md").read_text()
    assert "| mc+temperature |" in md and "- **laplace**: NLL" in md


def value_of(result, method, key):
    return result["methods"][method]["metrics"][key]


def test_an_ensemble_of_one_run_equals_deterministic(toy, tmp_path):
    root, runs = toy
    assert run_cli(runs[0], "--methods", "ensemble", "-o", tmp_path) == 0
    saved = np.load(tmp_path / "predictions.npz")
    np.testing.assert_array_equal(saved["ensemble"], saved["deterministic"])
    result = json.loads((tmp_path / "uncertainty.json").read_text())["methods"]
    assert result["ensemble"]["metrics"] == result["deterministic"]["metrics"]
    assert all(d == {"value": 0.0, "low": 0.0, "high": 0.0} for d in result["ensemble"]["difference"].values())
    assert result["ensemble"]["verdict"] == {"nll": "within noise", "ece": "within noise"}


# ---- Laplace -----------------------------------------------------------------------------------------------------------


class LogitsOf(torch.nn.Module):
    """The tiny model as laplace-torch wants it: input ids in, logits out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).logits


@pytest.mark.filterwarnings("ignore:By default `link_approx` is `probit`")
def test_laplace_on_a_tiny_head_agrees_with_laplace_torch_used_directly():
    from datasets import Dataset
    from laplace import Laplace
    from torch.utils.data import DataLoader, TensorDataset

    model = tiny_model("bert", num_labels=3).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (48, 8), generator=gen)
    y = torch.randint(0, 3, (48,), generator=gen)
    train, test = slice(0, 32), slice(32, 48)

    # directly: laplace-torch finds the last layer of the whole model itself
    wrapped = LogitsOf(model)
    la = Laplace(wrapped, "classification", subset_of_weights="last_layer", hessian_structure="full")
    la.fit(DataLoader(TensorDataset(ids[train], y[train]), batch_size=8))
    la.optimize_prior_precision(pred_type="glm", method="marglik", prior_structure="scalar", link_approx="probit")
    direct = la(ids[test], pred_type="glm", link_approx="probit").detach().double().numpy()

    # ours: the head's input features from the deterministic pass, then the head alone
    def pass_(rows):
        ds = Dataset.from_dict({"input_ids": ids[rows].tolist(), "label": y[rows].tolist()})
        return R.deterministic_pass(model, ds, None, batch_size=8, features=True, progress=False)

    tr, te = pass_(train), pass_(test)
    assert te["head"] is model.classifier
    (ours,), prior = M.laplace_last_layer(te["head"], tr["features"], tr["labels"], [te["features"]])
    np.testing.assert_allclose(ours, direct, atol=1e-5)
    assert prior == pytest.approx(float(la.prior_precision), rel=1e-4)
    plain = torch.softmax(torch.as_tensor(te["logits"]), -1).numpy()
    assert np.abs(ours - plain).max() > 1e-6  # the posterior moves the probabilities (towards uniform)


def test_decoder_features_are_the_pooled_tokens_input():
    from datasets import Dataset

    model = tiny_model("llama", num_labels=2, pad_token_id=0).eval()
    rows = [[5, 6, 7, 8], [9, 10, 0, 0], [11, 0, 0, 0]]  # right-padded: pooled at each row's last real token
    ds = Dataset.from_dict({"input_ids": rows, "attention_mask": [[int(t != 0) for t in r] for r in rows],
                            "label": [0, 1, 0]})
    out = R.deterministic_pass(model, ds, None, batch_size=3, features=True, progress=False)
    head = out["head"]
    with torch.no_grad():
        recomputed = torch.as_tensor(out["features"]).float() @ head.weight.T
    np.testing.assert_allclose(recomputed.numpy(), out["logits"], atol=1e-5)


# ---- regression ------------------------------------------------------------------------------------------------------


def test_regression_gaussian_nll_and_refused_methods(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "reg"
    data.mkdir()
    for split, n in (("train", 20), ("validation", 16), ("test", 18)):
        rows = ["text,label"] + [f"the movie was {'good ' * int(k)}fine,{k + rng.normal(0, 0.3):.3f}"
                                 for k in rng.integers(0, 4, n)]
        (data / f"{split}.csv").write_text("\n".join(rows) + "\n")
    run = make_run(tmp_path, 1, data)
    # a regression head: one output
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run / "model", num_labels=1,
                                                               problem_type="regression",
                                                               ignore_mismatched_sizes=True)
    model.save_pretrained(run / "model")
    capsys.readouterr()
    assert run_cli(run, "--methods", "temperature", "-o", tmp_path / "bad") == 2
    assert "temperature: not defined for regression" in capsys.readouterr().err
    assert run_cli(run, "--methods", "deterministic,mc,ensemble", "-o", tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "uncertainty.json").read_text())
    saved = np.load(tmp_path / "out" / "predictions.npz")
    target = saved["labels"]
    for name in ("deterministic", "mc", "ensemble"):
        mean, var = saved[name][:, 0], saved[name][:, 1]
        expected = np.mean(0.5 * (np.log(2 * np.pi * var) + (target - mean) ** 2 / var))
        assert result["methods"][name]["metrics"]["nll"] == pytest.approx(expected, abs=1e-9)
        assert result["methods"][name]["metrics"]["mse"] == pytest.approx(np.mean((target - mean) ** 2), abs=1e-9)
    # deterministic's variance: the validation MSE (the Gaussian NLL's closed-form minimiser)
    assert result["methods"]["deterministic"]["noise_variance"] > 0


def test_noise_variance_minimises_validation_nll():
    rng = np.random.default_rng(0)
    mean, v = rng.normal(size=50), rng.random(50) * 0.1
    target = mean + rng.normal(0, 0.5, 50)
    s2 = M.fit_noise_variance(mean, target, v)
    grid = np.exp(np.linspace(np.log(s2) - 1, np.log(s2) + 1, 2001))
    best = grid[np.argmin([S.gaussian_nll(mean, v + g, target) for g in grid])]
    assert s2 == pytest.approx(best, rel=2e-3)
    assert M.fit_noise_variance(mean, target) == pytest.approx(np.mean((target - mean) ** 2))


# ---- the command: bad input, reruns --------------------------------------------------------------------------------


def _one_line_exit_2(capsys, code):
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_unknown_method_is_one_line(toy, tmp_path, capsys):
    capsys.readouterr()
    code = run_cli(toy[1][0], "--methods", "mc,bayes", "-o", tmp_path / "out")
    assert "--methods bayes: unknown method" in _one_line_exit_2(capsys, code)
    assert not (tmp_path / "out" / "uncertainty.json").exists()


def test_runs_of_different_recipes_are_one_line(toy, tmp_path, capsys):
    root, runs = toy
    other = make_run(tmp_path, 3, root / "data", extra="dropout:\n  spec: hidden=0.3\n")
    capsys.readouterr()  # the set-up's own output
    code = run_cli(runs[0], other, "-o", tmp_path / "out")
    err = _one_line_exit_2(capsys, code)
    assert str(other) in err and "differs" in err and "dropout.spec" in err


def test_a_run_without_a_validation_split_is_one_line(toy, tmp_path, capsys, monkeypatch):
    capsys.readouterr()
    import dropout_tune.data as data

    real = data.load_task

    def without_validation(*args, **kwargs):
        spec, splits = real(*args, **kwargs)
        del splits["validation"]
        return spec, splits

    monkeypatch.setattr(data, "load_task", without_validation)
    code = run_cli(toy[1][0], "--methods", "temperature", "-o", tmp_path / "out")
    err = _one_line_exit_2(capsys, code)
    assert "has no validation split" in err and str(toy[1][0]) in err


def test_not_a_run_dir_and_other_bad_values_are_one_line(toy, tmp_path, capsys):
    capsys.readouterr()
    assert "not a directory" in _one_line_exit_2(capsys, run_cli(tmp_path / "missing", "-o", tmp_path / "o"))
    assert "--samples" in _one_line_exit_2(capsys, main(["uncertainty", str(toy[1][0]), "-T", "0", "-o",
                                                         str(tmp_path / "o")]))
    assert "--ood-task" in _one_line_exit_2(capsys, run_cli(toy[1][0], "--ood-task", "nope", "-o",
                                                            tmp_path / "o"))


def test_rerun_into_the_same_output_refuses_without_overwrite(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(toy[1][0], "--methods", "deterministic", "-o", out) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    before = (out / "uncertainty.json").read_text()
    err = _one_line_exit_2(capsys, run_cli(toy[1][0], "--methods", "deterministic", "-o", out))
    assert "--overwrite" in err
    assert (out / "uncertainty.json").read_text() == before
    assert run_cli(toy[1][0], "--methods", "deterministic,temperature", "-o", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert "temperature" in json.loads((out / "uncertainty.json").read_text())["methods"]


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["uncertainty", "--help"])
    out = capsys.readouterr().out
    assert "mc+temperature" in out and "\x1b" not in out
