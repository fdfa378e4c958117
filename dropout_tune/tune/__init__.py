"""``dropout-tune tune``: search dropout configurations with Optuna (default) or Ray Tune.

Modules (each importable alone; nothing heavy is imported here, so ``dropout_tune.compare`` can use the executor):

- :mod:`.space`: the search space (``search:`` section or ``--space`` file) and how a trial's values become a recipe;
- :mod:`.objective`: one trial: train on the train split, report the validation metric at each evaluation;
- :mod:`.storage`: Optuna storage (SQLite file by default, any database URL), heartbeats, trial counts;
- :mod:`.workers`: K worker processes on one machine (one device each where there are several);
- :mod:`.optuna_backend`, :mod:`.ray_backend`: the two search engines;
- :mod:`.executor`: whole recipes as resumable jobs in the same storage (the confirm stage and ``compare``);
- :mod:`.confirm`: the found configuration against the recipe's own, paired by seed, on the test split;
- :mod:`.report`: ``trials.csv``, ``best_recipe.yaml``, ``report.md``, ``history.png``, ``importance.png``;
- :mod:`.dashboard`: optuna-dashboard over a search's storage, the search study alone;
- :mod:`.search`: checks before anything trains, then search, report and confirm (``run_tune``).
"""
