"""Calibration metrics equal direct loop implementations written from the textbook definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dropout_tune import calibration as cal


def random_probs(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, c))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, c, size=n)
    return probs, labels


# --- reference implementations: plain Python loops over examples / bins -------------------------------------------


def ref_accuracy(probs, labels):
    return sum(int(max(range(len(row)), key=lambda j: row[j]) == y) for row, y in zip(probs, labels)) / len(labels)


def ref_nll(probs, labels):
    return sum(-math.log(max(row[y], 1e-12)) for row, y in zip(probs, labels)) / len(labels)


def ref_brier(probs, labels):
    total = 0.0
    for row, y in zip(probs, labels):
        total += sum((row[j] - (1.0 if j == y else 0.0)) ** 2 for j in range(len(row)))
    return total / len(labels)


def ref_bins_equal_width(probs, labels, n_bins):
    bins = [[] for _ in range(n_bins)]
    for row, y in zip(probs, labels):
        conf = max(row)
        pred = list(row).index(conf)
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            if lo < conf <= hi or (b == 0 and conf == 0.0):
                bins[b].append((conf, float(pred == y)))
                break
    return bins


def ref_ece(bins, n):
    total = 0.0
    for members in bins:
        if members:
            acc = sum(c for _, c in members) / len(members)
            conf = sum(p for p, _ in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


def ref_mce(bins):
    gaps = []
    for members in bins:
        if members:
            acc = sum(c for _, c in members) / len(members)
            conf = sum(p for p, _ in members) / len(members)
            gaps.append(abs(acc - conf))
    return max(gaps)


def ref_auroc(in_scores, out_scores):
    wins = 0.0
    for o in out_scores:
        for i in in_scores:
            wins += 1.0 if o > i else 0.5 if o == i else 0.0
    return wins / (len(in_scores) * len(out_scores))


# --- tests -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,c,n_bins,seed", [(200, 2, 15, 0), (333, 5, 10, 1), (7, 3, 15, 2), (1000, 10, 20, 3)])
def test_metrics_equal_reference(n, c, n_bins, seed):
    probs, labels = random_probs(n, c, seed)
    got = cal.calibration_metrics(probs, labels, n_bins=n_bins)
    assert got["n"] == n
    assert got["accuracy"] == pytest.approx(ref_accuracy(probs, labels), abs=1e-12)
    assert got["nll"] == pytest.approx(ref_nll(probs, labels), abs=1e-12)
    assert got["brier"] == pytest.approx(ref_brier(probs, labels), abs=1e-12)
    width_bins = ref_bins_equal_width(probs, labels, n_bins)
    assert got["ece"] == pytest.approx(ref_ece(width_bins, n), abs=1e-12)
    assert got["mce"] == pytest.approx(ref_mce(width_bins), abs=1e-12)
    mass_bins = ref_bins_equal_mass(probs, labels, n_bins)
    assert got["adaptive_ece"] == pytest.approx(ref_ece(mass_bins, n), abs=1e-12)


def test_bin_boundaries_are_right_closed():
    # Confidence exactly 0.6 with 10 bins belongs to (0.5, 0.6], not (0.6, 0.7].
    bins = cal.reliability_bins(np.array([[0.6, 0.4], [0.3, 0.7]]), np.array([0, 0]), n_bins=10)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert bins.accuracy[5] == 1.0 and bins.accuracy[6] == 0.0


def test_perfectly_calibrated_and_confident_cases():
    labels = np.array([0, 1, 0, 1])
    onehot = np.eye(2)[labels]
    m = cal.calibration_metrics(onehot, labels)
    assert m["accuracy"] == 1.0 and m["ece"] == 0.0 and m["mce"] == 0.0 and m["brier"] == 0.0
    assert m["nll"] == pytest.approx(0.0, abs=1e-12)
    wrong = np.eye(2)[1 - labels]
    m = cal.calibration_metrics(wrong, labels)
    assert m["accuracy"] == 0.0 and m["ece"] == 1.0 and m["brier"] == 2.0
    assert m["nll"] == pytest.approx(-math.log(1e-12))  # floored, not infinite


def test_binary_probabilities_given_as_vector():
    p1 = np.array([0.9, 0.2, 0.55])
    labels = np.array([1, 0, 0])
    assert cal.calibration_metrics(p1, labels) == cal.calibration_metrics(np.stack([1 - p1, p1], 1), labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ood_auroc_equals_reference_and_sklearn(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    s_in = rng.normal(size=120)
    s_out = rng.normal(loc=0.7, size=80)
    # Rounded copies create many ties, which must count one half.
    for a, b in ((s_in, s_out), (np.round(s_in, 1), np.round(s_out, 1))):
        got = cal.ood_auroc(a, b)
        assert got == pytest.approx(ref_auroc(a, b), abs=1e-12)
        expected = roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])
        assert got == pytest.approx(expected, abs=1e-12)


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    values = np.round(np.random.default_rng(5).normal(size=500), 1)
    np.testing.assert_allclose(cal._average_ranks(values), rankdata(values), atol=1e-12)


@pytest.mark.parametrize(
    "probs,labels,match",
    [
        ([[0.5, 0.6]], [0], "sum to 1"),
        ([[1.2, -0.2]], [0], r"\[0, 1\]"),
        ([[0.5, 0.5]], [2], "class indices"),
        ([[0.5, 0.5], [0.5, 0.5]], [0], "labels"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "no examples"),
        ([[[0.5, 0.5]]], [0], "probs"),
    ],
)
def test_bad_input_raises_value_error(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        cal.calibration_metrics(probs, labels)


def test_bad_n_bins_and_scores():
    probs, labels = random_probs(10, 2, 0)
    with pytest.raises(ValueError, match="n_bins"):
        cal.ece(probs, labels, n_bins=0)
    with pytest.raises(ValueError, match="out_scores"):
        cal.ood_auroc([0.1], [])
    with pytest.raises(ValueError, match="in_scores"):
        cal.ood_auroc([float("nan")], [0.2])


def test_reliability_diagram_writes_png(tmp_path):
    probs, labels = random_probs(100, 3, 0)
    single = cal.reliability_diagram(probs, labels, tmp_path / "one.png")
    both = cal.reliability_diagram(probs, labels, tmp_path / "sub" / "two.png", other=probs ** 2 /
                                   (probs ** 2).sum(1, keepdims=True))
    for path in (single, both):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    width = lambda data: struct.unpack(">I", data[16:20])[0]  # noqa: E731 - IHDR width
    assert width(both.read_bytes()) > 1.5 * width(single.read_bytes())  # two panels side by side


def test_bins_to_dict_is_json_ready():
    import json

    probs, labels = random_probs(50, 2, 1)
    d = cal.reliability_bins(probs, labels, 5).to_dict()
    assert len(d["count"]) == 5 and sum(d["count"]) == 50
    json.dumps(d)


def ref_bins_equal_mass(probs, labels, n_bins):
    """Equal-mass bins whose upper edges are the confidences at the equal-count split points; an example joins the
    first bin whose edge reaches its confidence, so equal confidences share a bin (written from the definition)."""
    items = sorted(((max(row), float(list(row).index(max(row)) == y)) for row, y in zip(probs, labels)),
                   key=lambda t: t[0])
    n = len(items)
    k = min(n_bins, n)
    base, extra = divmod(n, k)
    edges, stop = [], 0
    for b in range(k):
        stop += base + (1 if b < extra else 0)
        edges.append(items[stop - 1][0])
    bins = [[] for _ in range(k)]
    for conf, correct in items:
        bins[next(b for b in range(k) if conf <= edges[b])].append((conf, correct))
    return bins


def tied_probs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary probabilities on a coarse grid: many examples share a confidence, ties straddle the bin edges."""
    rng = np.random.default_rng(seed)
    p1 = rng.choice([0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9], size=n)
    return np.stack([1 - p1, p1], axis=1), (rng.random(n) < p1).astype(int)


def test_adaptive_ece_ties_share_a_bin_and_row_order_does_not_matter():
    probs, labels = tied_probs(200, seed=0)
    first = cal.adaptive_ece(probs, labels, n_bins=15)
    rng = np.random.default_rng(1)
    values = set()
    for _ in range(50):
        order = rng.permutation(len(labels))
        values.add(cal.adaptive_ece(probs[order], labels[order], n_bins=15))
    assert values == {first}  # bit for bit, not only close
    assert first == pytest.approx(ref_ece(ref_bins_equal_mass(probs, labels, 15), 200), abs=1e-12)
    bins = cal.adaptive_bins(probs, labels, n_bins=15)
    filled = bins.count > 0
    # every distinct confidence lies in exactly one bin: the filled bins' confidence ranges do not overlap
    confidence = probs.max(1)
    for b in np.flatnonzero(filled):
        lo, hi = bins.edges[b], bins.edges[b + 1]
        inside = confidence[(confidence > lo) & (confidence <= hi)] if b else confidence[confidence <= hi]
        assert len(inside) == bins.count[b]
    assert bins.count.sum() == 200


def test_reliability_diagram_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # a user's non-Agg backend
    try:
        figures = plt.get_fignums()
        probs, labels = random_probs(40, 2, 0)
        cal.reliability_diagram(probs, labels, tmp_path / "r.png", other=probs)
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # no pyplot figure left behind either
    finally:
        plt.switch_backend(before)


# --- the calibration metrics as `evaluate` modules --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ece", "adaptive_ece", "brier", "nll"])
def test_evaluate_modules_load_offline_and_equal_calibration_metrics(name, monkeypatch):
    import evaluate

    import dropout_tune

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = evaluate.load(dropout_tune.metric_path(name))
    for probs, labels, n_bins in (random_probs(300, 4, 3) + (10,), tied_probs(120, 2) + (15,)):
        expected = cal.calibration_metrics(probs, labels, n_bins=n_bins)[name]
        extra = {"n_bins": n_bins} if name.endswith("ece") else {}
        got = module.compute(predictions=probs, references=labels, **extra)
        assert list(got) == [name]
        assert got[name] == pytest.approx(expected, abs=1e-12)
    binary = module.compute(predictions=[0.9, 0.2, 0.7], references=[1, 0, 0])  # P(class 1) per example
    assert binary[name] == pytest.approx(cal.calibration_metrics([0.9, 0.2, 0.7], [1, 0, 0])[name], abs=1e-12)


def test_evaluate_modules_combine_in_a_compute_metrics(monkeypatch):
    import evaluate
    from scipy.special import softmax

    import dropout_tune

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    combined = evaluate.combine([dropout_tune.metric_path(m) for m in ("ece", "adaptive_ece", "brier", "nll")])
    logits = np.random.default_rng(0).normal(size=(64, 3))
    labels = np.random.default_rng(1).integers(0, 3, size=64)
    got = combined.compute(predictions=softmax(logits, axis=-1), references=labels)
    expected = cal.calibration_metrics(softmax(logits, axis=-1), labels)
    assert set(got) == {"ece", "adaptive_ece", "brier", "nll"}
    for key, value in got.items():
        assert value == pytest.approx(expected[key], abs=1e-12)
    with pytest.raises(ValueError, match="unknown calibration metric 'mce'"):
        dropout_tune.metric_path("mce")
