"""Comparing schedules over seeds: runs, intervals, paired differences, files."""

import json
import math

import pytest

from dropout_tune.compare import run_comparison, summarize, variants_from
from dropout_tune.recipe import Recipe
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task


def test_summarize_matches_a_t_interval():
    from scipy import stats

    values = [0.61, 0.64, 0.70, 0.66]
    s = summarize(values)
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert s["mean"] == pytest.approx(mean) and s["std"] == pytest.approx(sd)
    assert s["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * sd / 2)


def test_bad_schedule_variant():
    with pytest.raises(ValueError, match="LABEL=SCHEDULE"):
        variants_from([Recipe()], ["no-equals-sign"])
    with pytest.raises(ValueError, match="hidden.p"):
        variants_from([Recipe()], ["x=hidden=late:1.5:0.5"])


def test_two_schedules_two_seeds(tmp_path):
    save_tiny_text_model(tmp_path / "model")
    write_toy_text_task(tmp_path / "data", sizes=(32, 16, 16))
    base = Recipe.from_dict({"name": "toy", "model": {"name": str(tmp_path / "model")},
                             "data": {"task": str(tmp_path / "data"), "max_length": 16},
                             "training": {"batch_size": 8, "eval_strategy": "no"}})
    variants = variants_from([base], ["const=all=0.1", "off=all=off_after:0.1:at=0.5"])
    comparison = run_comparison(variants, [1, 2], tmp_path / "cmp")
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(data["variants"]) == {"const", "off"}
    for label in ("const", "off"):
        test = data["variants"][label]["test"]
        assert test["n"] == 2 and test["ci95"] is not None
        assert set(data["variants"][label]["per_seed"]) == {"1", "2"}
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    table = comparison.table()
    assert "| const |" in table and "| off |" in table and "±" in table
    # each variant x seed is its own run directory, with the schedule it was given
    steps = (tmp_path / "cmp" / "off" / "seed2" / "steps.jsonl").read_text().splitlines()
    assert json.loads(steps[-1])["dropout/hidden"] == 0.0
    # finished runs are reused, not retrained
    mtime = (tmp_path / "cmp" / "off" / "seed2" / "metrics.json").stat().st_mtime
    run_comparison(variants, [1, 2], tmp_path / "cmp")
    assert (tmp_path / "cmp" / "off" / "seed2" / "metrics.json").stat().st_mtime == mtime
