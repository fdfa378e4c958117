"""The ROLE=VALUE / all= notation, written once in roles.py and shared by dropout specs and schedule sets."""

import pytest

from dropout_tune.roles import ALL, ALL_ROLES, ROLES, expand_all, is_number, parse_assignments
from dropout_tune.schedules import ScheduleSet
from dropout_tune.spec import DropoutSpec


def test_expand_all_gives_the_all_value_to_roles_not_named_in_role_order():
    assert expand_all({"lora": 0.05, ALL: 0.1}) == {**dict.fromkeys(ALL_ROLES, 0.1), "lora": 0.05}
    assert "head" not in expand_all({ALL: 0.1}) and expand_all({ALL: 0.1, "head": 0.2})["head"] == 0.2
    assert list(expand_all({"classifier": 1, "embedding": 2})) == ["embedding", "classifier"]
    assert expand_all({}) == {}


def test_expand_all_rejects_an_unknown_role_and_leaves_its_input_alone():
    data = {ALL: 0.1, "mlp": 0.2}
    with pytest.raises(ValueError, match="unknown dropout role 'mlp'; valid roles: embedding, attention"):
        expand_all(data)
    assert data == {ALL: 0.1, "mlp": 0.2}


def test_parse_assignments_splits_and_strips():
    assert parse_assignments(" hidden = 0.1 , all=0.2", "dropout spec", "ROLE=RATE") == {"hidden": "0.1", "all": "0.2"}


@pytest.mark.parametrize("text, message", [
    ("hidden=0.1,hidden=0.2", "role 'hidden' given twice in dropout spec 'hidden=0.1,hidden=0.2'"),
    ("hidden=0.1,", "cannot parse '' in dropout spec 'hidden=0.1,'; expected ROLE=RATE"),
    ("hidden=", "cannot parse 'hidden=' in dropout spec"),
    ("=0.1", "cannot parse '=0.1' in dropout spec"),
    ("0.1,hidden=0", "cannot parse '0.1' in dropout spec"),  # no is_bare_value: every entry needs ROLE=
])
def test_parse_assignments_errors_name_the_entry(text, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_assignments(text, "dropout spec", "ROLE=RATE")


def test_a_bare_value_is_for_all_only_when_it_does_not_start_with_a_role():
    assert parse_assignments("0.1,hidden=0", "spec", "ROLE=RATE", is_number) == {"all": "0.1", "hidden": "0"}
    # "hidden" is a role, so "hidden=..." is never a bare value, even when the predicate would accept it
    assert parse_assignments("hidden=0.2", "spec", "ROLE=RATE", lambda entry: True) == {"hidden": "0.2"}


def test_is_number():
    assert is_number("0.1") and is_number(" 1e-3 ") and is_number("nan")
    assert not is_number("early:0.1") and not is_number("") and not is_number("hidden=0.1")


def test_spec_and_schedule_set_read_the_notation_alike():
    spec = DropoutSpec.parse("0.1,attention=0")
    assert spec == DropoutSpec.from_dict({"all": 0.1, "attention": 0.0})
    assert ScheduleSet.parse("0.1,attention=0").rates(0.0) == dict(spec.items())
    for parse, what in ((DropoutSpec.parse, "dropout spec"), (ScheduleSet.parse, "schedule")):
        with pytest.raises(ValueError, match=f"role 'hidden' given twice in {what} "):
            parse("hidden=0.1,hidden=0.2")
        with pytest.raises(ValueError, match="unknown dropout role 'mlp'"):
            parse("mlp=0.1")


def test_dropout_spec_keeps_its_bare_rate_and_messages():
    assert DropoutSpec.parse("0.2") == DropoutSpec.uniform(0.2)
    with pytest.raises(ValueError, match="^uniform: dropout rate 'attention' is not a number"):
        DropoutSpec.parse("attention")
    with pytest.raises(ValueError, match="^cannot parse 'x' in dropout spec 'x,hidden=0.1'; expected ROLE=RATE"):
        DropoutSpec.parse("x,hidden=0.1")
