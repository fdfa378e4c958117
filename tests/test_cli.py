"""The CLI: bad input gives one line and exit code 2; inspect prints collapsed sites."""

import json
import subprocess
import sys

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
