"""The wheel built from the checkout ships the recipes and runs from outside the checkout."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built (offline, no build isolation) from a copy of the checkout's sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "dropout_tune", source / "dropout_tune", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp / "dist").glob("dropout_tune-*.whl")
    return path


def test_the_wheel_holds_every_recipe_and_the_command(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dropout_tune" / "recipes").rglob("*.yaml")}
    assert len(shipped) >= 13 and shipped <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dropout-tune = dropout_tune.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert any(n.endswith("LICENSE") and ".dist-info/" in n for n in names)  # the licence travels with the wheel


def test_the_installed_wheel_lists_and_copies_recipes_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip would put in site-packages
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "dropout_tune.cli", *args], capture_output=True, text=True,
                              env=env, cwd=work, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import dropout_tune; print(dropout_tune.__file__)"],
                           capture_output=True, text=True, env=env, cwd=work, timeout=120).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's
    listing = cli("recipes", "list")
    assert listing.returncode == 0, listing.stderr
    assert "rotten_tomatoes " in listing.stdout and "accelerate/cpu_2proc" in listing.stdout
    copied = cli("recipes", "copy", "rotten_tomatoes", "mine.yaml")
    assert copied.returncode == 0, copied.stderr
    assert (work / "mine.yaml").read_text() == (ROOT / "dropout_tune/recipes/rotten_tomatoes.yaml").read_text()


def test_the_top_level_recipes_folder_is_the_shipped_one():
    from dropout_tune.recipe_catalog import RECIPES_DIR

    assert (ROOT / "recipes").resolve() == RECIPES_DIR
    assert (ROOT / "recipes" / "rotten_tomatoes.yaml").is_file()


def test_the_licence_extras_and_python_floor_are_what_the_readme_says():
    import re

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("## Quick start")]
    assert project["requires-python"] == ">=3.10" and "Python 3.10 or newer" in install
    assert {"ray", "llm", "dev"} <= set(project["optional-dependencies"])
    for extra in project["optional-dependencies"]:
        assert f"| `{extra}` |" in install, extra  # each extra is listed in the install section
    assert re.search(r"pip install \.", install) and "download.pytorch.org/whl/cu" in install
