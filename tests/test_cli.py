"""The CLI: bad input gives one line and exit code 2; inspect prints collapsed sites."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dropout_tune.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dropout_tune.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["inspect", "minilm", "--dropout", "attention=1.5"], "outside [0, 1)"),
    (["inspect", "minilm", "--dropout", "attn=0.1"], "valid roles"),
    (["inspect", "minilm", "--dropout", "attention=0.1,"], "cannot parse"),
    (["inspect", "./no/such/dir"], "does not exist"),
])
def test_bad_input_one_line_exit_2(args, needle):
    result = _run(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


@pytest.mark.integration
def test_inspect_minilm_lists_every_site_with_roles(capsys):
    assert main(["inspect", "minilm"]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.*.attention.self.dropout ×6" in out
    assert "attention 6 sites" in out and "hidden 12 sites" in out and "embedding 1 sites" in out


@pytest.mark.integration
def test_inspect_json_before_after(capsys):
    assert main(["inspect", "minilm", "--json", "--dropout", "attention=0"]) == 0
    data = json.loads(capsys.readouterr().out)
    attention = [s for s in data["sites"] if s["role"] == "attention"]
    assert len(attention) == 6 and all(s["p"] == 0.1 and s["p_after"] == 0.0 for s in attention)
    assert {s["kind"] for s in attention} == {"module_p"}


# ---- help text, command discovery -------------------------------------------------------------------------------------


def test_inspect_warns_about_a_role_the_model_lacks(capsys):
    assert main(["inspect", "minilm", "--dropout", "lora=0.1"]) == 0
    out, err = capsys.readouterr()
    assert "minilm has no lora dropout" in err and "lora ignored" in err and "dropout sites" in out


def _all_parsers(parser, path=("dropout-tune",)):
    """(command path, parser) for the top-level parser and every sub-command, nested ones included."""
    import argparse

    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _all_parsers(child, (*path, name))


def test_help_of_every_command_is_plain_text():
    from dropout_tune.cli import COMMANDS, build_parser

    parsers = dict(_all_parsers(build_parser()))
    assert {f"dropout-tune {name}" for name in COMMANDS} <= set(parsers)
    assert {"dropout-tune recipes list", "dropout-tune recipes copy"} <= set(parsers)
    for path, parser in parsers.items():
        text = parser.format_help()
        for markup in ("``", ":mod:", ":class:", ":func:", ":meth:"):
            assert markup not in text, f"{path} --help shows {markup!r}"


def test_help_runs_as_a_command():
    result = _run("plot-schedule", "--help")
    assert result.returncode == 0 and "SCHEDULE" in result.stdout and "``" not in result.stdout


def test_a_command_that_fails_to_import_is_an_error_not_a_missing_command(monkeypatch):
    import dropout_tune.cli as cli

    assert not hasattr(cli, "UsageError")
    monkeypatch.setitem(cli.COMMANDS, "broken", "no_such_command_module")
    with pytest.raises(ModuleNotFoundError, match="no_such_command_module"):
        cli.build_parser()


def _one_error_line(capsys, needle):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    return lines[0]


# ---- recipes ------------------------------------------------------------------------------------------------------------


def test_recipes_list_names_every_shipped_file_with_its_description(capsys):
    from dropout_tune.recipe_catalog import RECIPES_DIR

    assert main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    shipped = sorted(RECIPES_DIR.glob("*.yaml")) + sorted((RECIPES_DIR / "accelerate").glob("*.yaml"))
    assert len(shipped) >= 13
    for path in shipped:
        name = path.stem if path.parent == RECIPES_DIR else f"accelerate/{path.stem}"
        description = path.read_text().splitlines()[0].lstrip("# ")
        assert 10 < len(description) <= 110, f"{name}: the first header line is its one-line description"
        assert any(line.split() and line.split()[0] == name and line.endswith(description)
                   for line in out.splitlines()), name


def test_recipes_copy_writes_a_copy_and_never_overwrites(tmp_path, capsys):
    from dropout_tune.recipe_catalog import packaged_recipe

    assert main(["recipes", "copy", "rotten_tomatoes_late", str(tmp_path / "mine")]) == 0
    copy = tmp_path / "mine.yaml"
    assert copy.read_text() == packaged_recipe("rotten_tomatoes_late").read_text()
    assert main(["recipes", "copy", "accelerate/cpu_2proc", str(tmp_path)]) == 0
    assert (tmp_path / "cpu_2proc.yaml").is_file()
    capsys.readouterr()
    copy.write_text("mine: edited\n")
    assert main(["recipes", "copy", "rotten_tomatoes", str(copy)]) == 2
    _one_error_line(capsys, "already exists")
    assert copy.read_text() == "mine: edited\n"
    assert main(["recipes", "copy", "rotten_tomatos", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "close matches: rotten_tomatoes")


def test_train_takes_a_recipe_by_name_and_a_path_wins(tmp_path, monkeypatch, capsys):
    import dropout_tune.train
    from dropout_tune.recipe_catalog import packaged_recipe

    calls = []  # (recipe file, overrides) as run_cli resolves them; training itself is stubbed out
    monkeypatch.setattr(dropout_tune.train.Recipe, "from_yaml",
                        staticmethod(lambda path, overrides=(): calls.append((str(path), list(overrides))) or
                                     SimpleNamespace(output_dir="stub")))
    monkeypatch.setattr(dropout_tune.train, "train", lambda recipe: {})
    monkeypatch.setattr(dropout_tune.train, "summary_table", lambda metrics: "")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "rotten_tomatoes", "training.max_steps=2"]) == 0
    assert calls[-1] == (str(packaged_recipe("rotten_tomatoes")), ["training.max_steps=2"])
    (tmp_path / "rotten_tomatoes").write_text("name: local\n")  # a file that exists wins over the shipped name
    assert main(["train", "rotten_tomatoes"]) == 0
    assert calls[-1][0] == "rotten_tomatoes"
    assert main(["train", "rotten_tomatoe"]) == 2
    _one_error_line(capsys, "unknown recipe 'rotten_tomatoe'; close matches: rotten_tomatoes")
    assert main(["train", "configs/rotten_tomatoes.yaml"]) == 2  # a path that does not exist is not a name
    _one_error_line(capsys, "does not exist (the packaged recipe of that name: rotten_tomatoes)")
    assert len(calls) == 2


def test_demo_fails_loudly_without_its_packaged_recipe(tmp_path, monkeypatch, capsys):
    import dropout_tune.compare
    import dropout_tune.recipe_catalog as catalog

    monkeypatch.setattr(catalog, "RECIPES_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(dropout_tune.compare, "run_comparison", lambda *a, **k: pytest.fail("ran without a recipe"))
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 2
    _one_error_line(capsys, "packaged recipes are missing")
    assert not (tmp_path / "demo").exists()


def test_demo_uses_the_packaged_recipe(tmp_path, monkeypatch):
    import dropout_tune.compare
    from dropout_tune.recipe import Recipe
    from dropout_tune.recipe_catalog import packaged_recipe

    seen = {}

    def fake_run_comparison(variants, seeds, output, overrides, reuse):
        seen["recipes"] = [v.recipe for v in variants]
        raise ValueError("stop here")

    monkeypatch.setattr(dropout_tune.compare, "run_comparison", fake_run_comparison)
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 2
    shipped = Recipe.from_yaml(packaged_recipe("rotten_tomatoes"))
    assert all(r.optim == shipped.optim and r.model == shipped.model for r in seen["recipes"])


# ---- compare: bad output paths ---------------------------------------------------------------------------------------


def test_compare_output_not_a_directory_or_read_only_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import os

    import dropout_tune.train

    monkeypatch.setattr(dropout_tune.train, "train", lambda *a, **k: pytest.fail("trained despite a bad -o"))
    (tmp_path / "file").write_text("x")
    assert main(["compare", "rotten_tomatoes", "-o", str(tmp_path / "file")]) == 2
    _one_error_line(capsys, f"compare output directory {tmp_path / 'file'}: not a directory")
    read_only = tmp_path / "ro"
    read_only.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(str(read_only))
                            else real_access(p, mode, **k))
    assert main(["compare", "rotten_tomatoes", "-o", str(read_only / "cmp")]) == 2
    _one_error_line(capsys, "not writable")
    assert not (read_only / "cmp").exists()


# ---- plot-schedule: bad input, long runs, backend -----------------------------------------------------------------------


@pytest.mark.parametrize("content, needle", [
    ("hidden: [1, 2\n", "not valid YAML: expected ',' or ']'"),
    ("hidden: {shape: early\n  p: 0.1}\n", "not valid YAML"),
    ("hidden: {shape: early, p: 0.1, until: 2}\n", "hidden.until: 2.0 is outside [0, 1]"),
])
def test_plot_schedule_yaml_errors_are_one_line(content, needle, tmp_path, capsys):
    path = tmp_path / "schedule.yaml"
    path.write_text(content)
    assert main(["plot-schedule", str(path), "-o", str(tmp_path / "x.png")]) == 2
    line = _one_error_line(capsys, needle)
    assert str(path) in line or "hidden" in line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("output, needle", [
    ("file/x.png", "not a directory"),
    ("folder", "is a directory"),
    ("x.unknown", "cannot write a unknown image"),
])
def test_plot_schedule_bad_output_is_one_line_before_drawing(output, needle, tmp_path, monkeypatch, capsys):
    import dropout_tune.schedule_plot

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr(dropout_tune.schedule_plot, "sample_steps", lambda *a, **k: pytest.fail("drew anyway"))
    assert main(["plot-schedule", "hidden=0.1", "-o", str(tmp_path / output)]) == 2
    _one_error_line(capsys, needle)


def test_plot_schedule_of_a_very_long_run_samples_steps_and_keeps_jumps_exact(tmp_path, capsys):
    from dropout_tune.schedule_plot import plot_schedule, sample_steps
    from dropout_tune.schedules import ScheduleSet

    total = 100_000_000
    s = ScheduleSet.parse("hidden=off_after:0.1:at=0.3,attention=late:0.1:start=0.7,embedding=linear:0.2:0")
    steps = sample_steps(s, total)
    assert len(steps) <= 2000 and steps[0] == 0 and steps[-1] == total - 1
    assert {30_000_000, 70_000_000} <= set(steps)  # the first step at each cutoff (t >= 0.3, t >= 0.7)
    lines = {line.get_label(): line for line in plot_schedule(s, total).axes[0].get_lines()}
    x, y = list(lines["hidden"].get_xdata()), list(lines["hidden"].get_ydata())
    switch = x.index(30_000_000)
    assert y[switch - 1] == 0.1 and y[switch] == 0.0 and x[switch - 1] < 30_000_000
    assert main(["plot-schedule", "hidden=off_after:0.1:at=0.3", "--steps", str(total),
                 "-o", str(tmp_path / "long.png")]) == 0
    assert (tmp_path / "long.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_schedule_of_a_short_run_draws_every_step():
    from dropout_tune.schedule_plot import sample_steps
    from dropout_tune.schedules import ScheduleSet

    assert sample_steps(ScheduleSet.parse("hidden=linear:0.2:0"), 2000) == list(range(2000))


def test_plot_schedule_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # any non-Agg backend: plotting must not switch it
    try:
        assert main(["plot-schedule", "hidden=0.1", "--steps", "20", "-o", str(tmp_path / "s.png")]) == 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
