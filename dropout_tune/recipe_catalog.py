"""The recipes that ship with the package: training recipes in dropout_tune/recipes/*.yaml and accelerate launch
configs in dropout_tune/recipes/accelerate/*.yaml. Find one by name or path, list them with their one-line
descriptions, or copy one out to edit (like torchtune's tune ls / tune cp).

Example:
    >>> resolve_recipe("rotten_tomatoes").name
    'rotten_tomatoes.yaml'
    >>> entry = next(r for r in list_recipes() if r.name == "rotten_tomatoes_late")
    >>> entry.description
    'Late dropout (Liu et al., ICML 2023): no dropout for the first half of training, then p=0.1.'
    >>> resolve_recipe("roten_tomatoes")
    Traceback (most recent call last):
    ...
    ValueError: unknown recipe 'roten_tomatoes'; close matches: rotten_tomatoes, tune_rotten_tomatoes, rotten_tomatoes_lora (all: dropout-tune recipes list)
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .files import check_writable_file

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
LAUNCH_CONFIGS = "accelerate"  # sub-folder of the launch configs; their names are "accelerate/NAME"
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PackagedRecipe:
    """One shipped file: ``name`` as the commands take it ("rotten_tomatoes", "accelerate/cpu_2proc")."""

    name: str
    path: Path
    description: str

    @property
    def is_launch_config(self) -> bool:
        return self.name.startswith(f"{LAUNCH_CONFIGS}/")


def describe(path: Union[str, os.PathLike]) -> str:
    """The first line of the file's comment header, without the ``#`` (every shipped file starts with one)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().strip()
    return first.lstrip("#").strip() if first.startswith("#") else ""


def list_recipes(launch_configs: bool = True) -> list[PackagedRecipe]:
    """The shipped training recipes (sorted by name), then the accelerate launch configs when ``launch_configs``."""
    entries = [PackagedRecipe(p.stem, p, describe(p)) for p in sorted(RECIPES_DIR.glob("*.yaml"))]
    if launch_configs:
        entries += [PackagedRecipe(f"{LAUNCH_CONFIGS}/{p.stem}", p, describe(p))
                    for p in sorted((RECIPES_DIR / LAUNCH_CONFIGS).glob("*.yaml"))]
    return entries


def packaged_recipe(name: str, launch_configs: bool = True) -> Path:
    """The shipped file called ``name`` (with or without ``.yaml``; launch configs only when ``launch_configs``);
    a one-line error listing close matches when there is none, and a loud one when the package was installed
    without its recipes."""
    stem = name[: -len(Path(name).suffix)] if name.endswith(_SUFFIXES) else name
    entries = list_recipes(launch_configs)
    if not any(not e.is_launch_config for e in entries):
        raise FileNotFoundError(f"the packaged recipes are missing (no YAML files in {RECIPES_DIR}); reinstall "
                                f"dropout-tune, or pass a recipe file")
    for entry in entries:
        if entry.name == stem:
            return entry.path
    close = difflib.get_close_matches(stem, [e.name for e in entries], n=3, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "it is not a file either"
    raise ValueError(f"unknown recipe {name!r}; {hint} (all: dropout-tune recipes list)")


def resolve_recipe(name_or_path: Union[str, os.PathLike]) -> Path:
    """The recipe file for a path or a packaged recipe's name; a path that exists wins over a name.

    A string with a folder in it is a path: when it does not exist the error says so (and names the packaged
    recipe of the same name, if any), rather than silently training something else.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if len(path.parts) > 1:
        if path.exists():
            raise ValueError(f"recipe {text!r} is not a file")
        same = [e.name for e in list_recipes(launch_configs=False) if e.path.name == path.name]
        hint = f" (the packaged recipe of that name: {same[0]})" if same else ""
        raise FileNotFoundError(f"recipe {text!r} does not exist{hint}")
    return packaged_recipe(text, launch_configs=False)


def copy_recipe(name: str, destination: Union[str, os.PathLike]) -> Path:
    """Copy the shipped file ``name`` to ``destination`` (a folder, or a file path; ``.yaml`` is added when it has
    no suffix) and return the new path; refuses to overwrite an existing file.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> copy_recipe("rotten_tomatoes", folder / "mine").name
    'mine.yaml'
    >>> copy_recipe("rotten_tomatoes", folder / "mine.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../mine.yaml already exists; not overwriting it (remove it or pick another destination)
    """
    source = packaged_recipe(name)
    target = Path(destination).expanduser()
    if target.is_dir() or os.fspath(destination).endswith(("/", os.sep)):
        target = target / source.name
    elif not target.suffix:
        target = target.with_suffix(source.suffix)
    if target.exists():
        raise ValueError(f"{target} already exists; not overwriting it (remove it or pick another destination)")
    check_writable_file(target, what="destination")
    try:
        with open(target, "xb") as out:  # "x": never replaces a file that appeared meanwhile
            out.write(source.read_bytes())
    except FileExistsError:
        raise ValueError(f"{target} already exists; not overwriting it") from None
    return target
