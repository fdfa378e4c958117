"""``evaluate_uncertainty``: every method on one run's test split (an ensemble over several runs), its metrics, the
paired bootstrap differences to ``deterministic``, and the output files.

Seconds per method count every pass and fit the method needs, in full (a pass two methods share counts in both):
deterministic = the eval-mode test pass; temperature = the validation pass, the fit and the test pass; mc = the MC
test pass; mc+temperature = the MC validation pass, the fit and the MC test pass; ensemble = the members' test
passes; laplace = the training-split feature pass, the fit and the test pass. With an OOD task, the method's OOD
passes are added.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from . import methods as M
from . import report, runs as R, scores as S

METHODS = ("deterministic", "temperature", "mc", "mc+temperature", "ensemble", "laplace")
REGRESSION_METHODS = ("deterministic", "mc", "ensemble")
#: What a method needs besides the deterministic test pass.
NEEDS_VALIDATION = {"temperature", "mc+temperature"}
NEEDS_MC = {"mc", "mc+temperature"}


def parse_methods(methods: Optional[Sequence[str]], n_runs: int) -> list[str]:
    """The methods to run, ``deterministic`` first (always: the baseline); None gives every method that applies
    (ensemble with several runs; laplace when laplace-torch imports). A ValueError names an unknown method."""
    if methods is None:
        chosen = [m for m in METHODS if m != "ensemble" or n_runs > 1]
        try:
            M.import_laplace()
        except ValueError:
            chosen.remove("laplace")
    else:
        chosen = []
        for name in methods:
            for m in (s.strip() for s in str(name).split(",")):
                if m and m not in METHODS:
                    raise ValueError(f"--methods {m}: unknown method; valid: {', '.join(METHODS)}")
                if m and m not in chosen:
                    chosen.append(m)
    if "deterministic" in chosen:
        chosen.remove("deterministic")
    return ["deterministic"] + chosen


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, key: str, fn, *args, **kwargs):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return value

    def total(self, *keys: str) -> float:
        return float(sum(self.seconds.get(k, 0.0) for k in keys))


def evaluate_uncertainty(run_dirs: Sequence[str], output: str, *, methods: Optional[Sequence[str]] = None,
                         samples: Optional[int] = None, spec: Any = None, mode: Optional[str] = None,
                         stochastic_layers: Optional[int] = None, ood_task: Optional[str] = None,
                         batch_size: int = 32, max_batch: Optional[int] = None,
                         max_examples: Optional[int] = None, n_bins: int = 15, resamples: int = 1000,
                         seed: int = 0, device: Any = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``methods`` on the runs of ``run_dirs`` and write the outputs into ``output`` (see
    ``uncertainty.report``); returns the ``uncertainty.json`` dict. Methods other than ``ensemble`` use the first
    run; ``ensemble`` averages all of them. MC options default to the first run's recipe (``mc_eval`` section;
    rates: ``spec``, else the recipe's nominal rates, as ``mc-eval``); ``max_examples`` overrides ``data.max_eval``.
    Refuses an ``output`` that already holds these outputs unless ``overwrite`` (then only they are replaced)."""
    from ..evaluation import pick_device, recipe_options, sampling_spec
    from ..mc import mc_predict, validate_options
    from ..spec import DropoutSpec

    chosen = parse_methods(methods, len(run_dirs))
    out_dir = report.check_output(output, overwrite)
    for name, value in (("samples", samples), ("batch_size", batch_size), ("max_examples", max_examples),
                        ("bins", n_bins), ("bootstrap", resamples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value!r}")
    if spec is not None:
        try:
            spec = DropoutSpec.coerce(spec)
        except ValueError as err:
            raise ValueError(f"--spec: {err}") from None
    run_list = R.open_runs(run_dirs)
    first = run_list[0]
    options = recipe_options(first.recipe)
    samples = samples or options["samples"] or 20
    mode = mode or options["mode"] or "loop"
    if mode != "trunk":
        stochastic_layers = None
    elif stochastic_layers is None:
        stochastic_layers = options["stochastic_layers"]
    validate_options(samples, mode, stochastic_layers, max_batch)
    if "laplace" in chosen:
        M.import_laplace()
    if ood_task is not None:
        from ..data import get_task

        if not Path(str(ood_task)).expanduser().exists():
            try:
                get_task(ood_task)
            except ValueError as err:
                raise ValueError(f"--ood-task: {err}") from None
    device = pick_device(device)

    split_names = ["validation", "test"] + (["train"] if "laplace" in chosen else [])
    task_spec, data = R.load_splits(first, split_names, max_examples=max_examples)
    regression = task_spec.is_regression
    if regression:
        refused = [m for m in chosen if m not in REGRESSION_METHODS]
        if refused:
            raise ValueError(f"--methods {refused[0]}: not defined for regression (task {task_spec.name!r}); "
                             f"methods for regression: {', '.join(REGRESSION_METHODS)}")
    ood_data = None
    if ood_task is not None:
        if regression:
            raise ValueError("--ood-task: OOD AUROC needs a classification task")
        _, ood_splits = R.load_splits(first, ["test"], task=ood_task, max_examples=max_examples)
        ood_data = ood_splits["test"]

    clock = _Clock()
    need_val = regression or bool(NEEDS_VALIDATION & set(chosen))
    need_mc = bool(NEEDS_MC & set(chosen))
    members = run_list if "ensemble" in chosen else run_list[:1]
    det: list[dict[str, Any]] = []  # per member: test / validation / ood deterministic outputs
    mc: dict[str, Any] = {}
    laplace: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for i, run in enumerate(members):
        model, tokenizer = R.load_run_model(run, device)
        enc = {split: R.tokenized(ds, tokenizer, task_spec, first) for split, ds in data.items()
               if split != "train" or i == 0}
        enc_ood = R.tokenized(ood_data, tokenizer, _ood_spec(ood_task), first) if ood_data is not None else None
        want_features = i == 0 and "laplace" in chosen
        tag = f"run {i + 1}/{len(members)}"
        outputs = {"test": clock.run(f"det_test_{i}", R.deterministic_pass, model, enc["test"], tokenizer,
                                     batch_size, features=want_features, progress=progress,
                                     desc=f"{tag} test, deterministic")}
        if need_val:
            outputs["validation"] = clock.run(f"det_val_{i}", R.deterministic_pass, model, enc["validation"],
                                              tokenizer, batch_size, progress=progress,
                                              desc=f"{tag} validation, deterministic")
        if enc_ood is not None:
            outputs["ood"] = clock.run(f"det_ood_{i}", R.deterministic_pass, model, enc_ood, tokenizer, batch_size,
                                       features=want_features, progress=progress, desc=f"{tag} OOD, deterministic")
        if want_features:
            outputs["train"] = clock.run("det_train", R.deterministic_pass, model, enc["train"], tokenizer,
                                         batch_size, features=True, progress=progress,
                                         desc="train features for Laplace")
        det.append(outputs)
        if i == 0 and need_mc:
            mc_options = dict(samples=samples, mode=mode, stochastic_layers=stochastic_layers,
                              spec=sampling_spec(model, spec, first.recipe.dropout), max_batch=max_batch,
                              batch_size=batch_size, tokenizer=tokenizer, seed=seed, progress=progress,
                              deterministic=False)
            mc_splits = [("test", enc["test"])] + ([("validation", enc["validation"])] if (
                "mc+temperature" in chosen or regression) else []) + ([("ood", enc_ood)] if enc_ood is not None
                                                                    else [])
            for split, ds in mc_splits:
                mc[split] = clock.run(f"mc_{split}", mc_predict, model, ds, **mc_options)
            rates = dict(mc["test"].rates)
        del model
    labels = det[0]["test"]["labels"]
    if labels is None:
        raise ValueError(f"RUN_DIR {first.run_dir}: the test split has no labels")
    for i, outputs in enumerate(det[1:], start=1):
        if not np.array_equal(outputs["test"]["labels"], labels):
            raise ValueError(f"RUN_DIR {members[i].run_dir}: its test labels differ from the first run's")

    arrays: dict[str, np.ndarray] = {"labels": labels}
    if need_val:
        arrays["validation_logits"] = det[0]["validation"]["logits"]
        arrays["validation_labels"] = det[0]["validation"]["labels"]
    results: dict[str, dict[str, Any]] = {}
    ood = ood_data is not None
    o = ["det_ood_0"] if ood else []
    if regression:
        _regression_methods(chosen, det, mc, members, clock, arrays, results, n_bins, resamples, seed, progress)
    else:
        probs = lambda logits, t=1.0: M.softmax(logits, t)  # noqa: E731
        test_ood = {}
        test_ood["deterministic"] = (probs(det[0]["test"]["logits"]),
                                     probs(det[0]["ood"]["logits"]) if ood else None)
        results["deterministic"] = {"seconds": clock.total("det_test_0", *o)}
        if "temperature" in chosen:
            t = clock.run("fit_t", M.fit_temperature, arrays["validation_logits"], arrays["validation_labels"])
            test_ood["temperature"] = (probs(det[0]["test"]["logits"], t),
                                       probs(det[0]["ood"]["logits"], t) if ood else None)
            results["temperature"] = {"temperature": t, "seconds": clock.total("det_val_0", "fit_t", "det_test_0",
                                                                                  *o)}
        if "mc" in chosen:
            test_ood["mc"] = (mc["test"].mean_probs, mc["ood"].mean_probs if ood else None)
            results["mc"] = {"seconds": clock.total("mc_test", *(["mc_ood"] if ood else []))}
        if "mc+temperature" in chosen:
            arrays["validation_mc_log_probs"] = M.log_probs(mc["validation"].mean_probs)
            t = clock.run("fit_mc_t", M.fit_temperature, arrays["validation_mc_log_probs"], mc["validation"].labels)
            test_ood["mc+temperature"] = (probs(M.log_probs(mc["test"].mean_probs), t),
                                          probs(M.log_probs(mc["ood"].mean_probs), t) if ood else None)
            results["mc+temperature"] = {"temperature": t, "seconds": clock.total(
                "mc_validation", "fit_mc_t", "mc_test", *(["mc_ood"] if ood else []))}
        if "ensemble" in chosen:
            test_ood["ensemble"] = (M.ensemble_probs([probs(d["test"]["logits"]) for d in det]),
                                    M.ensemble_probs([probs(d["ood"]["logits"]) for d in det]) if ood else None)
            results["ensemble"] = {"members": [str(r.run_dir) for r in members], "seconds": clock.total(
                *[f"det_test_{i}" for i in range(len(det))], *[f"det_ood_{i}" for i in range(len(det)) if ood])}
        if "laplace" in chosen:
            d0 = det[0]
            feats = [d0["test"]["features"]] + ([d0["ood"]["features"]] if ood else [])
            (lap, prior) = clock.run("fit_laplace", M.laplace_last_layer, d0["test"]["head"],
                                     d0["train"]["features"], d0["train"]["labels"], feats)
            test_ood["laplace"] = (lap[0], lap[1] if ood else None)
            results["laplace"] = {"prior_precision": prior, "seconds": clock.total(
                "det_train", "fit_laplace", "det_test_0", *o)}
        for name in chosen:
            arrays[name] = test_ood[name][0]
            if ood:
                arrays[f"ood_{name}"] = test_ood[name][1]
        _classification_scores(chosen, arrays, labels, ood, n_bins, resamples, seed, results, progress)

    result = {
        "runs": [str(r.run_dir) for r in run_list], "task": task_spec.name,
        "problem": "regression" if regression else "classification",
        "n_test": int(len(labels)), "n_validation": int(len(arrays["validation_labels"])) if need_val else None,
        "ood": {"task": ood_task, "n": int(len(ood_data))} if ood else None,
        "mc": {"samples": samples, "mode": mode, "stochastic_layers": stochastic_layers, "rates": rates}
        if mc else None,
        "bins": n_bins, "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95},
        "methods": results,
    }
    report.write_outputs(out_dir, result, arrays, n_bins)
    return result


def _ood_spec(ood_task: Optional[str]):
    from ..data import load_task
    from ..data.catalog import get_task

    if ood_task is None:
        return None
    if Path(str(ood_task)).expanduser().exists():
        return load_task(ood_task)[0]
    return get_task(ood_task)


def _scores(chosen, arrays, labels, score, verdict_keys, n_bins, resamples, seed, results, progress,
            ood=False) -> None:
    """Metrics of each method on the test split (``score(name, rows, ood_rows)``) and paired bootstrap intervals
    of the differences to deterministic: one set of resampled rows shared by every method."""
    rows = S.bootstrap_indices(len(labels), resamples, seed)
    ood_rows = S.bootstrap_indices(len(arrays["ood_deterministic"]), resamples, seed + 1) if ood else None
    full = np.arange(len(labels))
    full_ood = np.arange(len(arrays["ood_deterministic"])) if ood else None
    base = S.bootstrap_draws(lambda r, q=None: score("deterministic", r, q), rows, ood_rows, progress,
                             "bootstrap deterministic")
    for name in chosen:
        metrics = score(name, full, full_ood)
        results[name]["metrics"] = metrics
        if name == "deterministic":
            continue
        draws = S.bootstrap_draws(lambda r, q=None: score(name, r, q), rows, ood_rows, progress,
                                  f"bootstrap {name}")
        det_metrics = results["deterministic"]["metrics"]
        results[name]["difference"] = {
            k: {"value": metrics[k] - det_metrics[k], **S.interval(draws[k] - base[k])} for k in metrics}
        results[name]["verdict"] = {k: S.verdict(k, results[name]["difference"][k]) for k in verdict_keys}


def _classification_scores(chosen, arrays, labels, ood, n_bins, resamples, seed, results, progress) -> None:
    def score(name, rows, ood_rows=None):
        q = arrays.get(f"ood_{name}")
        return S.classification_scores(arrays[name][rows], labels[rows], n_bins,
                                       q[ood_rows] if ood_rows is not None else None)

    _scores(chosen, arrays, labels, score, ("nll", "ece"), n_bins, resamples, seed, results, progress, ood)


def _regression_methods(chosen, det, mc, members, clock, arrays, results, n_bins, resamples, seed,
                        progress) -> None:
    """Gaussian predictions ``(N, 2)`` = (mean, variance) per method, the noise variance fitted on validation."""
    target = np.asarray(det[0]["test"]["labels"], dtype=np.float64).ravel()
    val_target = np.asarray(det[0]["validation"]["labels"], dtype=np.float64).ravel()
    arrays["labels"] = target
    mean_of = lambda d, split: d[split]["logits"][:, 0]  # noqa: E731
    for name in chosen:
        if name == "deterministic":
            s2 = clock.run("fit_noise_det", M.fit_noise_variance, mean_of(det[0], "validation"), val_target)
            mean, var, keys = mean_of(det[0], "test"), np.zeros(len(target)), ("det_val_0", "fit_noise_det",
                                                                                "det_test_0")
        elif name == "mc":
            s2 = clock.run("fit_noise_mc", M.fit_noise_variance, mc["validation"].mean, val_target,
                           mc["validation"].variance)
            mean, var, keys = mc["test"].mean, mc["test"].variance, ("mc_validation", "fit_noise_mc", "mc_test")
        else:  # ensemble
            val_means = np.stack([mean_of(d, "validation") for d in det])
            test_means = np.stack([mean_of(d, "test") for d in det])
            s2 = clock.run("fit_noise_ens", M.fit_noise_variance, val_means.mean(0), val_target, val_means.var(0))
            mean, var = test_means.mean(0), test_means.var(0)
            keys = tuple(f"det_{s}_{i}" for i in range(len(det)) for s in ("val", "test")) + ("fit_noise_ens",)
        arrays[name] = np.stack([np.asarray(mean, dtype=np.float64).ravel(),
                                 np.asarray(var, dtype=np.float64).ravel() + s2], axis=1)
        results[name] = {"noise_variance": s2, "seconds": clock.total(*keys)}
        if name == "ensemble":
            results[name]["members"] = [str(r.run_dir) for r in members]

    def score(name, rows, ood_rows=None):
        return S.regression_scores(arrays[name][rows, 0], arrays[name][rows, 1], target[rows])

    _scores(chosen, arrays, target, score, ("nll", "mse"), n_bins, resamples, seed, results, progress)
