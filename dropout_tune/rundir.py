"""The run directory: what a run writes, refusing to mix two runs in one directory, the per-step log, and the
learning-curve plot. Files are written atomically (``files``), from the main process only.

Layout of ``runs/<name>/``: ``recipe.yaml`` (resolved config), ``metrics.json``, ``steps.jsonl`` (one line per
optimizer step: loss when logged, learning rate, dropout rate per role), ``model/`` (safetensors + config +
tokenizer), ``learning_curve.png``, ``checkpoints/`` (Trainer checkpoints, when saved), and with MC evaluation
``mc_eval.json`` and ``reliability.png``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional

from transformers import TrainerCallback

from .files import atomic_write_text, check_writable_dir, json_safe
from .figures import save_figure
from .patching import current_rates
from .runtime import unwrap_model

#: Entries whose presence means a directory already holds a run.
RUN_MARKERS = ("recipe.yaml", "metrics.json", "model", "checkpoints")
#: Everything a run writes; ``--overwrite`` removes these (and nothing else) before training.
RUN_OUTPUTS = RUN_MARKERS + ("steps.jsonl", "learning_curve.png", "mc_eval.json", "reliability.png")


def existing_run(run_dir: Path) -> list[str]:
    """The :data:`RUN_MARKERS` present in ``run_dir`` (empty when it holds no run); an empty folder (the Trainer makes
    ``checkpoints/`` whether or not it saves) is no run."""
    paths = [(name, Path(run_dir) / name) for name in RUN_MARKERS]
    return [name for name, path in paths if path.exists() and not (path.is_dir() and not any(path.iterdir()))]


def check_run_dir(run_dir: Path, overwrite: bool = False, resume_from: Optional[str] = None) -> bool:
    """Check, before any work, that a run may write into ``run_dir``: it must be (or can become) a writable
    directory holding no other run, unless ``overwrite`` (the old run is to be replaced: returns True, and the
    caller runs :func:`clear_run`) or the run resumes from a checkpoint inside ``run_dir`` (it continues that run
    in place). Raises ``ValueError`` naming the directory.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> check_run_dir(d)
    False
    >>> _ = (d / "metrics.json").write_text("{}")
    >>> check_run_dir(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: output directory ... already holds a run (metrics.json); pass --overwrite ...
    >>> check_run_dir(d, overwrite=True)
    True
    """
    run_dir = check_writable_dir(run_dir, create=False)  # created by the first file written
    if resume_from is not None:
        checkpoint = Path(resume_from).resolve()
        if run_dir.resolve() in checkpoint.parents:
            if overwrite:
                raise ValueError(f"training.overwrite would delete the checkpoint to resume from ({resume_from}); "
                                 f"resuming continues the run in {run_dir}, so drop the overwrite")
            return False
    found = existing_run(run_dir)
    if found and not overwrite:
        raise ValueError(f"output directory {run_dir} already holds a run ({', '.join(found)}); pass --overwrite "
                         f"(training.overwrite=true) to replace it, or choose another training.output_dir")
    return bool(found)


def clear_run(run_dir: Path) -> None:
    """Remove the files of a previous run (:data:`RUN_OUTPUTS`) from ``run_dir``; other files are left alone."""
    for name in RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


class NoEmptyCheckpoints(TrainerCallback):
    """Remove the Trainer's output folder (``checkpoints/``) at the end of training when nothing was saved in it:
    the Trainer creates it whether or not it saves, and an empty one would read as a run's marker."""

    def on_train_end(self, args, state, control, **kwargs):
        folder = Path(args.output_dir)
        if state.is_world_process_zero and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class StepLogCallback(TrainerCallback):
    """Collects one row per optimizer step (dropout rate per role as applied, learning rate, loss when logged) and
    writes them as ``steps.jsonl`` at the end of training, from the main process only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        # after the schedule callback (registered first) has set this step's rates
        self._pending = {"step": state.global_step + 1, **{f"dropout/{r}": p for r, p in
                                                            current_rates(unwrap_model(model)).items()}}

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        row = dict(getattr(self, "_pending", {"step": state.global_step}))
        if lr_scheduler is not None:
            row["learning_rate"] = float(lr_scheduler.get_last_lr()[0])
        row["epoch"] = state.epoch
        self.rows.append(row)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and self.rows and self.rows[-1]["step"] == state.global_step:
            self.rows[-1]["loss"] = logs["loss"]

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            atomic_write_text(self.path, "".join(json.dumps(json_safe(r)) + "\n" for r in self.rows))


def plot_learning_curve(log_history: Iterable[dict], steps: list[dict], path: Path, title: str = "") -> None:
    """Training loss and evaluation metrics over steps, with each role's dropout rate underneath (a PNG written
    atomically; matplotlib's object API, so the user's pyplot backend is left alone)."""
    from matplotlib.figure import Figure

    history = list(log_history)
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    fig = Figure(figsize=(7, 5.5))
    ax_loss, ax_rate = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    if train:
        ax_loss.plot(*zip(*train), label="train loss")
    if evals:
        ax_loss.plot(*zip(*evals), "o-", label="validation loss")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="upper right")
    ax_loss.set_title(title)
    roles = sorted({k for row in steps for k in row if k.startswith("dropout/")})
    for i, key in enumerate(roles):  # dashed styles so roles with equal rates stay visible
        ax_rate.plot([r["step"] for r in steps if key in r], [r[key] for r in steps if key in r],
                     label=key.split("/", 1)[1], drawstyle="steps-post", linestyle=("-", "--", ":", "-.")[i % 4],
                     linewidth=2.2 - 0.3 * (i % 4))
    ax_rate.set_ylabel("dropout p")
    ax_rate.set_xlabel("optimizer step")
    if roles:
        ax_rate.legend(loc="upper right", fontsize="small", ncol=3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]

