"""The run directory: atomic writes from the main process only, the per-step log, and the learning-curve plot.

Layout of ``runs/<name>/``: ``recipe.yaml`` (resolved config), ``metrics.json``, ``steps.jsonl`` (one line per
optimizer step: loss when logged, learning rate, dropout rate per role), ``model/`` (safetensors + config +
tokenizer), ``learning_curve.png``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from transformers import TrainerCallback

from .patching import current_rates


def is_main_process() -> bool:
    """Rank 0 of a distributed run (or the only process); read from the launcher's environment.

    >>> is_main_process()
    True
    """
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / inf
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


class StepLogCallback(TrainerCallback):
    """Collects one row per optimizer step (dropout rate per role as applied, learning rate, loss when logged) and
    writes them as ``steps.jsonl`` at the end of training, from the main process only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        # after the schedule callback (registered first) has set this step's rates
        self._pending = {"step": state.global_step + 1, **{f"dropout/{r}": p for r, p in
                                                            current_rates(_inner(model)).items()}}

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
            atomic_write_text(self.path, "".join(json.dumps(_clean(r)) + "\n" for r in self.rows))


def _inner(model):
    return getattr(model, "module", model)


def plot_learning_curve(log_history: Iterable[dict], steps: list[dict], path: Path, title: str = "") -> None:
    """Training loss and evaluation metrics over steps, with each role's dropout rate underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = list(log_history)
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    fig, (ax_loss, ax_rate) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1.4]})
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
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> Optional[dict]:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
