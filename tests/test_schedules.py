"""Schedule math at boundaries and cutoffs (exact values), the three input forms, and validation messages."""

import math

import pytest
import yaml

from dropout_tune.schedules import (
    Constant,
    Cosine,
    Curriculum,
    Early,
    Late,
    Linear,
    OffAfter,
    Piecewise,
    Ramp,
    ScheduleSet,
    Shape,
    progress_of,
    schedule_from_dict,
    schedule_from_string,
)


def rates_over(schedule, total_steps):
    return [schedule.at_step(s, total_steps) for s in range(total_steps)]


# ---- progress --------------------------------------------------------------------------------------------------


def test_progress_is_step_over_total_and_clamps_past_the_end():
    assert progress_of(0, 10) == 0.0
    assert progress_of(3, 10) == 0.3
    assert progress_of(10, 10) == 1.0
    assert progress_of(12, 10) == 1.0


@pytest.mark.parametrize("step, total, field", [(-1, 10, "step"), (0, 0, "total_steps"), (1.5, 10, "step")])
def test_progress_rejects_bad_steps(step, total, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        progress_of(step, total)


@pytest.mark.parametrize("t", [-0.1, 1.1, float("nan")])
def test_calling_a_schedule_outside_0_1_is_an_error(t):
    with pytest.raises(ValueError, match="progress: .* outside \\[0, 1\\]"):
        Constant(0.1)(t)


# ---- each shape, exact values ----------------------------------------------------------------------------------


def test_constant():
    assert rates_over(Constant(0.1), 4) == [0.1] * 4
    assert Constant(0.1)(1.0) == 0.1


def test_linear_is_exact_at_both_ends_and_midpoint():
    s = Linear(0.2, 0.0)
    assert (s(0.0), s(0.5), s(1.0)) == (0.2, 0.1, 0.0)
    assert rates_over(Linear(0.0, 0.2), 2) == [0.0, 0.1]


def test_cosine_is_exact_at_ends_and_decreasing():
    s = Cosine(0.2, 0.05)
    assert s(0.0) == 0.2 and s(1.0) == 0.05
    assert s(0.5) == pytest.approx(0.125, abs=1e-15)
    values = rates_over(s, 20)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_off_after_switches_at_the_cutoff_step():
    # at=0.3 over 10 steps: steps 0, 1, 2 keep p; step 3 (progress exactly 0.3) is off.
    assert rates_over(OffAfter(0.1, at=0.3), 10) == [0.1] * 3 + [0.0] * 7
    assert rates_over(OffAfter(0.1, at=0.0), 3) == [0.0] * 3
    assert rates_over(OffAfter(0.1, at=1.0), 3) == [0.1] * 3


def test_early_constant_ramp_matches_liu_et_al():
    assert rates_over(Early(0.1, until=0.5), 8) == [0.1] * 4 + [0.0] * 4
    assert Early(0.1, until=0.5).ramp is Ramp.CONSTANT


def test_early_linear_ramp_reaches_zero_at_the_cutoff():
    s = Early(0.1, until=0.5, ramp="linear")
    assert rates_over(s, 4) == [0.1, 0.05, 0.0, 0.0]
    assert s(0.5) == 0.0 and s(1.0) == 0.0
    assert Early(0.1, until=0.0, ramp="linear")(0.0) == 0.0  # no division by zero


def test_late_switches_on_at_the_cutoff_step():
    assert rates_over(Late(0.1, start=0.75), 8) == [0.0] * 6 + [0.1] * 2
    assert Late(0.1, start=0.0)(0.0) == 0.1


def test_curriculum_rate_rises_from_zero_towards_p():
    s = Curriculum(0.2, gamma=10)
    assert s(0.0) == 0.0
    assert s(0.1) == pytest.approx(0.2 * (1 - math.exp(-1)), rel=1e-15)
    assert s(1.0) == pytest.approx(0.2 * (1 - math.exp(-10)), rel=1e-15)
    values = rates_over(s, 10)
    assert all(a < b < 0.2 for a, b in zip(values, values[1:]))
    assert Curriculum(0.2).gamma == 10.0  # documented default


def test_piecewise_interpolates_holds_and_jumps():
    s = Piecewise([(0.2, 0.0), (0.6, 0.2), (0.6, 0.05), (1.0, 0.05)])
    assert s(0.0) == 0.0  # before the first point: its rate
    assert s(0.2) == 0.0
    assert s(0.4) == pytest.approx(0.1, abs=1e-15)
    assert s(0.6) == 0.05  # a jump: the later point holds from its progress on
    assert s(0.59999) == pytest.approx(0.2, abs=1e-5)
    assert s(1.0) == 0.05
    assert Piecewise([(0.5, 0.1)])(0.0) == Piecewise([(0.5, 0.1)])(1.0) == 0.1


def test_piecewise_can_express_off_after():
    jump = Piecewise([(0.0, 0.1), (0.3, 0.1), (0.3, 0.0)])
    assert rates_over(jump, 10) == rates_over(OffAfter(0.1, at=0.3), 10)


def test_every_shape_has_a_class_and_a_lower_case_constructor():
    import dropout_tune.schedules as schedules

    for shape in Shape:
        assert getattr(schedules, shape.value) is not None
    assert schedules.early is Early and schedules.off_after is OffAfter


# ---- validation: the field is named ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Constant(1.0), "p: dropout rate 1.0 is outside [0, 1)"),
        (lambda: Constant(-0.1), "p: dropout rate -0.1 is outside [0, 1)"),
        (lambda: Linear(0.1, 1.2), "end: dropout rate 1.2 is outside [0, 1)"),
        (lambda: OffAfter(0.1, at=1.5), "at: 1.5 is outside [0, 1]"),
        (lambda: Early(0.1, until=-0.1), "until: -0.1 is outside [0, 1]"),
        (lambda: Early(0.1, until=0.3, ramp="cubic"), "ramp: 'cubic' is not a ramp; valid ramps: constant, linear"),
        (lambda: Late(0.1, start="soon"), "start: 'soon' is not a number"),
        (lambda: Curriculum(0.1, gamma=0), "gamma: 0 must be a positive, finite number"),
        (lambda: Piecewise([]), "points: empty"),
        (lambda: Piecewise([(0.5, 0.1), (0.2, 0.0)]), "points[1].progress: 0.2 is before"),
        (lambda: Piecewise([(0.5, 1.1)]), "points[0].p: dropout rate 1.1 is outside [0, 1)"),
        (lambda: Piecewise([(0.5,)]), "points[0]: (0.5,) is not a [progress, p] pair"),
    ],
)
def test_bad_parameters_name_the_field(build, message):
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hidden": {"shape": "early", "p": 0.1, "until": 1.5}}, "hidden.until: 1.5 is outside [0, 1]"),
        ({"hidden": {"shape": "early", "p": 1.0, "until": 0.5}}, "hidden.p: dropout rate 1.0 is outside [0, 1)"),
        ({"attention": {"shape": "sigmoid", "p": 0.1}}, "attention.shape: unknown schedule shape 'sigmoid'; "
                                                         "valid shapes: constant, linear, cosine, off_after, early"),
        ({"hidden": {"p": 0.1}}, "hidden.shape: missing; valid shapes: constant"),
        ({"hidden": {"shape": "late", "p": 0.1}}, "hidden.start: missing parameter of shape 'late'"),
        ({"hidden": {"shape": "late", "p": 0.1, "start": 0.5, "at": 0.2}},
         "hidden.at: unknown parameter of shape 'late'; valid parameters: p, start"),
        ({"hidden": True}, "hidden: True is not a schedule"),
        ({"mlp": 0.1}, "unknown dropout role 'mlp'; valid roles: embedding, attention, hidden"),
        ({}, "empty schedule set"),
    ],
)
def test_bad_dicts_name_role_and_field(data, message):
    with pytest.raises(ValueError) as err:
        ScheduleSet.from_dict(data)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "text, message",
    [
        ("hidden=early:0.1:until=1.5", "hidden.until: 1.5 is outside [0, 1]"),
        ("hidden=1.5", "hidden.p: dropout rate 1.5 is outside [0, 1)"),
        ("hidden=sigmoid:0.1", "hidden.shape: unknown schedule shape 'sigmoid'"),
        ("hidden=late", "hidden.p: missing parameter of shape 'late'"),
        ("hidden=early:0.1:0.3:linear:9",
         "hidden.arguments: too many in 'early:0.1:0.3:linear:9'; early takes p, until, ramp"),
        ("hidden=early:0.1:p=0.2", "hidden.p: given twice"),
        ("hidden=:0.1", "hidden.shape: empty"),
        ("hidden=piecewise:0.1", "hidden.points: cannot parse '0.1'"),
        ("hidden", "cannot parse 'hidden' in schedule 'hidden'; expected ROLE=SCHEDULE"),
        ("hidden=0.1,hidden=0.2", "role 'hidden' given twice"),
        ("mlp=0.1", "unknown dropout role 'mlp'"),
        ("  ", "empty schedule"),
    ],
)
def test_bad_strings_give_clear_errors(text, message):
    with pytest.raises(ValueError) as err:
        ScheduleSet.parse(text)
    assert str(err.value).startswith(message)


# ---- forms: dict, YAML, compact string -------------------------------------------------------------------------

ISSUE_EXAMPLE = {"hidden": {"shape": "early", "p": 0.1, "until": 0.3}, "attention": {"shape": "constant", "p": 0.1}}

EVERY_SHAPE = {
    "embedding": {"shape": "linear", "start": 0.1, "end": 0.0},
    "attention": {"shape": "cosine", "start": 0.1, "end": 0.02},
    "hidden": {"shape": "early", "p": 0.1, "until": 0.3, "ramp": "linear"},
    "activation": {"shape": "curriculum", "p": 0.2, "gamma": 5.0},
    "classifier": {"shape": "piecewise", "points": [[0.0, 0.1], [0.5, 0.1], [0.5, 0.0]]},
    "lora": {"shape": "late", "p": 0.05, "start": 0.5},
}


def test_issue_example_in_dict_yaml_and_string_forms_agree():
    from_dict = ScheduleSet.from_dict(ISSUE_EXAMPLE)
    from_yaml = ScheduleSet.from_dict(yaml.safe_load(yaml.safe_dump(ISSUE_EXAMPLE)))
    from_string = ScheduleSet.parse("hidden=early:0.1:until=0.3,attention=0.1")
    assert from_dict == from_yaml == from_string
    assert from_dict.rates_at(2, 10) == {"attention": 0.1, "hidden": 0.1}
    assert from_dict.rates_at(3, 10) == {"attention": 0.1, "hidden": 0.0}


def test_dict_and_string_forms_round_trip_for_every_shape():
    s = ScheduleSet.from_dict(EVERY_SHAPE)
    assert ScheduleSet.from_dict(s.to_dict()) == s
    assert ScheduleSet.parse(s.to_string()) == s
    assert ScheduleSet.from_dict(yaml.safe_load(yaml.safe_dump(s.to_dict()))) == s
    assert s.to_dict()["hidden"] == EVERY_SHAPE["hidden"]
    assert s.to_dict()["classifier"] == EVERY_SHAPE["classifier"]


def test_compact_form_accepts_positional_and_named_arguments():
    assert schedule_from_string("early:0.1:0.3:linear") == Early(0.1, 0.3, "linear")
    assert schedule_from_string("early:p=0.1:until=0.3") == Early(0.1, 0.3)
    assert schedule_from_string("off_after:0.1:at=0.8") == OffAfter(0.1, 0.8)
    assert schedule_from_string("curriculum:0.2") == Curriculum(0.2, 10.0)
    assert schedule_from_string("piecewise:0.1@0:0@0.5") == Piecewise([(0.0, 0.1), (0.5, 0.0)])
    assert schedule_from_string(" 0.05 ") == Constant(0.05)


def test_all_key_covers_roles_not_named():
    s = ScheduleSet.from_dict({"all": 0.1, "hidden": {"shape": "off_after", "p": 0.1, "at": 0.5}})
    assert len(s) == 6
    assert s.rates(0.5) == {"embedding": 0.1, "attention": 0.1, "hidden": 0.0, "activation": 0.1,
                            "classifier": 0.1, "lora": 0.1}


def test_compact_entry_without_a_role_applies_to_every_other_role():
    bare = ScheduleSet.parse("0.1")
    assert bare == ScheduleSet.parse("all=0.1") == ScheduleSet.coerce(0.1)
    assert len(bare) == 6 and bare.explicit_roles == ()
    mixed = ScheduleSet.parse("early:0.1:until=0.3,attention=0.05")
    assert mixed.explicit_roles == ("attention",)
    assert mixed.rates(0.3) == {"embedding": 0.0, "attention": 0.05, "hidden": 0.0, "activation": 0.0,
                                "classifier": 0.0, "lora": 0.0}
    assert mixed.rates(0.0)["hidden"] == 0.1


def test_roles_come_out_in_canonical_order():
    s = ScheduleSet.parse("classifier=0.1,embedding=0.2,hidden=0")
    assert s.roles == ("embedding", "hidden", "classifier")


def test_coerce_and_from_file(tmp_path):
    s = ScheduleSet.from_dict(ISSUE_EXAMPLE)
    assert ScheduleSet.coerce(s) is s
    assert ScheduleSet.coerce(ISSUE_EXAMPLE) == s
    assert ScheduleSet.coerce("hidden=early:0.1:0.3,attention=0.1") == s
    assert ScheduleSet.coerce(0.1).rates(0.7) == {role: 0.1 for role in ScheduleSet.coerce(0.1)}
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(ISSUE_EXAMPLE))
    nested = tmp_path / "config.json"
    nested.write_text('{"dropout_schedule": {"hidden": {"shape": "early", "p": 0.1, "until": 0.3}, '
                      '"attention": 0.1}, "other": 1}')
    assert ScheduleSet.from_file(plain) == s == ScheduleSet.from_file(nested)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 0.1\n")
    with pytest.raises(ValueError, match="expected a mapping of role to schedule"):
        ScheduleSet.from_file(bad)


def test_schedule_from_dict_accepts_numbers_and_schedules():
    assert schedule_from_dict(0.1) == Constant(0.1)
    assert schedule_from_dict(Late(0.1, 0.5)) == Late(0.1, 0.5)


def test_max_rate():
    assert Linear(0.0, 0.2).max_rate == 0.2
    assert Piecewise([(0.0, 0.05), (0.5, 0.15)]).max_rate == 0.15
    assert Late(0.1, 0.5).max_rate == 0.1


# ---- the plot-schedule command ---------------------------------------------------------------------------------


def test_plot_schedule_draws_each_roles_rate_per_step():
    from dropout_tune.commands.plot_schedule import plot_schedule

    s = ScheduleSet.parse("hidden=early:0.1:until=0.3,attention=0.1")
    figure = plot_schedule(s, total_steps=10)
    lines = {line.get_label(): list(line.get_ydata()) for line in figure.axes[0].get_lines()}
    assert lines["hidden"] == [0.1, 0.1, 0.1] + [0.0] * 8  # one value per step, plus the end point
    assert lines["attention"] == [0.1] * 11


def test_plot_schedule_command_writes_a_png_from_a_string_or_a_file(tmp_path, capsys):
    from dropout_tune.cli import main

    out = tmp_path / "schedule.png"
    assert main(["plot-schedule", "hidden=early:0.1:until=0.3,attention=0.1", "--steps", "50", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = tmp_path / "schedule.yaml"
    config.write_text(yaml.safe_dump({"dropout_schedule": ISSUE_EXAMPLE}))
    out2 = tmp_path / "from_file.png"
    assert main(["plot-schedule", str(config), "--steps", "50", "-o", str(out2)]) == 0
    assert out2.stat().st_size > 1000
    assert "hidden" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["hidden=early:0.1:until=1.5"], "hidden.until: 1.5 is outside [0, 1]"),
    (["missing.yaml"], "No such file or directory"),
    (["hidden=0.1", "--steps", "0"], "--steps: 0 must be a positive number"),
])
def test_plot_schedule_command_reports_bad_input_in_one_line(argv, message, tmp_path, capsys):
    from dropout_tune.cli import main

    assert main(["plot-schedule", *argv, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


# ---- the compact form's grammar (dropout_tune.schedule_text) -----------------------------------------------------


def test_schedule_text_knows_the_grammar_only():
    """The grammar module imports no schedule code (so the schedules package can use it without a cycle); the shapes come in
    as data."""
    import ast
    import inspect

    from dropout_tune import schedule_text

    tree = ast.parse(inspect.getsource(schedule_text))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "typing", "roles"}
    shapes = {"bump": ["height", "at"]}
    assert schedule_text.parse_schedule("bump:0.2:at=0.5", shapes) == {"shape": "bump", "height": "0.2", "at": "0.5"}
    assert schedule_text.parse_schedule_set("bump:0.2:0.5,hidden=0", shapes) == {"all": "bump:0.2:0.5", "hidden": "0"}


def test_format_schedule_is_the_inverse_of_parse_schedule_for_every_shape():
    from dropout_tune.schedule_text import format_schedule, parse_schedule
    from dropout_tune.schedules import _SHAPE_PARAMETERS

    every_shape = [schedule for _, schedule in ScheduleSet.from_dict(EVERY_SHAPE).items()]
    for schedule in [*every_shape, Constant(0.1), OffAfter(0.1, 0.8)]:
        text = format_schedule(schedule.to_dict())
        assert text == schedule.to_string()
        assert schedule_from_dict(parse_schedule(text, _SHAPE_PARAMETERS)) == schedule


def test_an_unknown_shape_is_reported_by_the_dict_reader_with_the_valid_shapes():
    with pytest.raises(ValueError, match="^shape: unknown schedule shape 'sigmoid'; valid shapes: constant, linear"):
        schedule_from_string("sigmoid:0.1:0.5:0.9")
