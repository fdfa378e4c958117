"""dropout-tune recipes {list,copy}: the recipes and accelerate launch configs that ship with the package.

  dropout-tune recipes list                            every shipped file, with its one-line description
  dropout-tune recipes copy rotten_tomatoes mine.yaml  a copy to edit (never overwrites)
  dropout-tune train mine.yaml                         train from the copy (or: dropout-tune train rotten_tomatoes)
"""

from __future__ import annotations


def register(subparsers) -> None:
    import argparse

    parser = subparsers.add_parser("recipes", help="list the shipped recipes, or copy one to edit",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every shipped recipe and launch config, with its description")
    listing.set_defaults(func=run_list)
    copy = actions.add_parser("copy", help="copy a shipped recipe or launch config to edit it",
                              description="Copy a shipped recipe (or accelerate/NAME launch config) to DEST; refuses "
                                          "to overwrite an existing file.")
    copy.add_argument("name", metavar="NAME", help="as listed by 'dropout-tune recipes list'")
    copy.add_argument("destination", metavar="DEST",
                      help="a file (.yaml is added when there is no suffix) or an existing folder")
    copy.set_defaults(func=run_copy)


def run_list(args) -> int:
    from ..recipe_catalog import list_recipes

    entries = list_recipes()
    if not entries:
        raise FileNotFoundError("the packaged recipes are missing; reinstall dropout-tune")
    width = max(len(e.name) for e in entries)
    recipes = [e for e in entries if not e.is_launch_config]
    launch = [e for e in entries if e.is_launch_config]
    print("Recipes (dropout-tune train NAME [key=value ...]):")
    for entry in recipes:
        print(f"  {entry.name:<{width}}  {entry.description}")
    if launch:
        print("\nLaunch configs (copy one, then: accelerate launch --config_file FILE -m dropout_tune.train RECIPE):")
        for entry in launch:
            print(f"  {entry.name:<{width}}  {entry.description}")
    return 0


def run_copy(args) -> int:
    from ..recipe_catalog import copy_recipe

    target = copy_recipe(args.name, args.destination)
    print(f"copied {args.name} to {target}")
    return 0
