#!/usr/bin/env python
"""Benchmark MC-dropout evaluation on MiniLM / rotten_tomatoes: speed of every mode side by side, dropout
applications per pass, and accuracy / ECE of each mode on the test split. Prints a markdown table.

Rows: one deterministic pass; one no-grad pass with the same dropout active (the physical unit of MC work, "X");
``mc_predict`` in modes loop, replicate, trunk k=1 and k=2 (each includes its one deterministic pass); baal's
``patch_module`` + ``ModelWrapper.predict_on_batch`` when baal is importable (an optional dependency of this script
only). "MC efficiency" is a mode's examples/s divided by X / T: 1.0 means MC costs exactly T dropout passes.
Targets: best full-MC mode >= 0.9 (bookkeeping <= 10%); trunk k=1 >= 4x the best full-MC mode.

The model is MiniLM fine-tuned on ``--train-examples`` rotten_tomatoes training examples for one epoch (cached in
``--model-dir``, reused when present), or any saved model directory given with ``--model``.

    python scripts/bench_mc.py                         # CPU defaults: the first 96 test examples (~4 min)
    python scripts/bench_mc.py --n-eval 0 --device cuda  # the whole test split
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dropout_tune.calibration import calibration_metrics
from dropout_tune.mc import mc_dropout, mc_predict
from dropout_tune.testing import trace_dropout

DEFAULT_MODEL_DIR = Path(os.environ.get("DROPOUT_TUNE_CACHE", Path.home() / ".cache" / "dropout_tune")) / \
    "bench_mc_minilm_rt"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a saved model directory (skips fine-tuning)")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                   help="where the fine-tuned MiniLM is cached (default: %(default)s)")
    p.add_argument("--train-examples", type=int, default=2000)
    p.add_argument("--samples", "-T", type=int, default=20)
    p.add_argument("--n-eval", type=int, default=None,
                   help="test examples to evaluate, 0 = all (default: all on cuda, 96 on cpu)")
    p.add_argument("--test-file", type=Path, default=None,
                   help="JSON with {'text': [...], 'label': [...]} instead of the data registry's test split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-batch", type=int, default=None, help="rows per forward in replicate/trunk modes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"], help="attention implementation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=2, help="timed runs of each method (best is kept)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--no-baal", action="store_true")
    return p.parse_args(argv)


# ---- model and data -------------------------------------------------------------------------------------------------


def fine_tune(args, device) -> Path:
    """MiniLM + a fresh 2-class head, one epoch on the first `train_examples` training examples; saved to
    `args.model_dir` (with its tokenizer)."""
    from transformers import AutoTokenizer

    from dropout_tune import load_model, resolve_model_path
    from dropout_tune.data import load_task

    _, splits = load_task("rotten_tomatoes")
    train = splits["train"].shuffle(seed=0).select(range(min(args.train_examples, splits["train"].num_rows)))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    model = load_model("minilm", num_labels=2).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    torch.manual_seed(0)
    start = time.perf_counter()
    for i in range(0, len(train), 32):
        rows = train[i:i + 32]
        batch = tokenizer(rows["text"], padding=True, truncation=True, max_length=args.max_length,
                          return_tensors="pt").to(device)
        loss = model(**batch, labels=torch.tensor(rows["label"], device=device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"fine-tuned MiniLM on {len(train)} examples in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.model_dir)
    tokenizer.save_pretrained(args.model_dir)
    return args.model_dir


def load_eval_batches(args, tokenizer, device) -> list[dict]:
    if args.test_file is not None:
        data = json.loads(args.test_file.read_text())
        texts, labels = data["text"], data["label"]
    else:
        from dropout_tune.data import load_task

        _, splits = load_task("rotten_tomatoes")
        texts, labels = splits["test"]["text"], splits["test"]["label"]
    n = args.n_eval if args.n_eval is not None else (0 if args.device.startswith("cuda") else 96)
    if n:
        texts, labels = texts[:n], labels[:n]
    batches = []
    for i in range(0, len(texts), args.batch_size):
        batch = tokenizer(list(texts[i:i + args.batch_size]), padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="pt")
        batch["labels"] = torch.tensor(labels[i:i + args.batch_size])
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def inputs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


def labels_of(batches: list[dict]) -> np.ndarray:
    return torch.cat([b["labels"] for b in batches]).cpu().numpy()


# ---- the methods: each a callable that runs over all batches and returns the probabilities ---------------------------


def single_pass(model, batches, dropout: bool, repeats: int = 1):
    """One forward per batch, eval mode or with every dropout site active; the whole set ``repeats`` times, so that
    the reference pass is timed over as much work as an MC method (a short timing is flattered by best-of)."""
    def run():
        with torch.inference_mode(), (mc_dropout(model) if dropout else _eval(model)):
            for _ in range(repeats):
                probs = [model(**inputs_of(batch)).logits.float().softmax(-1) for batch in batches]
        return torch.cat(probs).cpu().double().numpy()
    return run


class _eval:
    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def mc_method(model, batches, samples, **kwargs):
    return lambda: mc_predict(model, batches, samples=samples, seed=0, **kwargs).mean_probs


class LogitsOf(nn.Module):
    """baal passes one positional input; a transformers model wants keyword inputs and returns an output object."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model(**batch).logits


def baal_method(model, batches, samples):
    """baal's recipe: patch_module (nn.Dropout -> always-on MCDropout) and ModelWrapper.predict_on_batch, which
    stacks the batch `samples` times in memory; returns (method, dropout applications per pass)."""
    from baal.bayesian.dropout import patch_module
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    wrapped = patch_module(LogitsOf(copy.deepcopy(model)), inplace=True).eval()
    device = next(model.parameters()).device
    wrapper = ModelWrapper(wrapped, TrainingArgs(use_cuda=device.type == "cuda", replicate_in_memory=True))
    with trace_dropout() as trace, torch.no_grad():
        wrapped(inputs_of(batches[0]))

    def run():
        means = [wrapper.predict_on_batch(inputs_of(b), iterations=samples).float().softmax(1).mean(-1)
                 for b in batches]
        return torch.cat(means).cpu().double().numpy()
    return run, trace.total


def applications_per_pass(model, batch, **kwargs) -> int:
    """Dropout applications in one sampled pass: mc_predict with one sample (its deterministic pass drops nothing)."""
    with trace_dropout() as trace:
        mc_predict(model, batch, samples=1, **kwargs)
    return trace.total


def time_round_robin(methods: dict, device: str, rounds: int) -> tuple[dict, dict]:
    """Best-of-``rounds`` wall time of each method, methods interleaved so that a slow spell of a shared machine
    hits them alike; also the probabilities of each method's first run (every run gives the same: fixed seeds)."""
    best = {name: float("inf") for name in methods}
    probs = {}
    if device.startswith("cuda"):  # warm-up: kernels, allocator (cheap there; on CPU the best-of covers it)
        for run in methods.values():
            run()
    for _ in range(rounds):
        for name, run in methods.items():
            sync(device)
            start = time.perf_counter()
            out = run()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
            probs.setdefault(name, out)
    return best, probs


# ---- main -----------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = args.device
    model_dir = Path(args.model) if args.model else args.model_dir
    if not args.model and not (model_dir / "config.json").exists():
        model_dir = fine_tune(args, device)
    dtype = getattr(torch, args.dtype)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation=args.attn,
                                                               dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batches = load_eval_batches(args, tokenizer, device)
    labels = labels_of(batches)
    n, T = len(labels), args.samples
    first = inputs_of(batches[0])
    with trace_dropout() as trace, mc_dropout(model), torch.no_grad():
        model(**first)
    full_applications = trace.total
    methods = {"deterministic pass": single_pass(model, batches, dropout=False, repeats=T),
               "one pass, dropout on (X)": single_pass(model, batches, dropout=True, repeats=T)}
    passes_timed = {"deterministic pass": T, "one pass, dropout on (X)": T}  # others: one MC prediction
    info = {"deterministic pass": ("1", 0, ""),
            "one pass, dropout on (X)": ("1", full_applications, "one stochastic sample")}
    for name, kwargs, passes in (
        ("mc loop", {"mode": "loop"}, f"{T}+1"),
        ("mc replicate", {"mode": "replicate", "max_batch": args.max_batch}, f"{T}+1 (batched)"),
        ("mc trunk k=1", {"mode": "trunk", "stochastic_layers": 1, "max_batch": args.max_batch},
         f"1 + {T}x(1 layer+head)"),
        ("mc trunk k=2", {"mode": "trunk", "stochastic_layers": 2, "max_batch": args.max_batch},
         f"1 + {T}x(2 layers+head)"),
    ):
        methods[name] = mc_method(model, batches, T, **kwargs)
        info[name] = (passes, applications_per_pass(model, first, **kwargs), "")
    # Apples to apples with baal: only the sites baal samples (nn.Dropout called as modules: no attention), no
    # deterministic pass.
    from dropout_tune.patching import current_rates

    baal_sites = {role: p for role, p in current_rates(model).items() if role != "attention"}
    name = "mc replicate, baal's sites, no det. pass"
    kwargs = {"mode": "replicate", "max_batch": args.max_batch, "spec": baal_sites, "deterministic": False}
    methods[name] = mc_method(model, batches, T, **kwargs)
    info[name] = (f"{T} (batched)", applications_per_pass(model, first, **kwargs), "same work as baal")
    if not args.no_baal:
        try:
            name = "baal patch_module + predict_on_batch"
            methods[name], applications = baal_method(model, batches, T)
            info[name] = (f"{T} (batched)", applications, "no deterministic pass; attention dropout off")
        except ImportError:
            print("baal is not installed: its row is skipped (pip install baal)", file=sys.stderr)
    seconds, probs = time_round_robin(methods, device, args.rounds)
    rows = []
    for name in methods:
        metrics = calibration_metrics(probs[name], labels)
        passes, applications, note = info[name]
        rows.append({"method": name, "examples_per_s": n * passes_timed.get(name, 1) / seconds[name],
                     "seconds": seconds[name],
                     "forwards": passes, "dropout_per_pass": applications, "accuracy": metrics["accuracy"],
                     "ece": metrics["ece"], "nll": metrics["nll"], "note": note})
    x_rate = n * T / seconds["one pass, dropout on (X)"]
    for row in rows:
        row["mc_efficiency"] = row["examples_per_s"] / (x_rate / T) if row["method"].startswith(("mc", "baal")) \
            else None
    full = [r for r in rows if r["method"] in ("mc loop", "mc replicate")]
    best_full = max(full, key=lambda r: r["examples_per_s"])
    trunk1 = next(r for r in rows if r["method"] == "mc trunk k=1")
    speedup = trunk1["examples_per_s"] / best_full["examples_per_s"]

    print(f"\nMiniLM ({model_dir}), rotten_tomatoes test: {n} examples, T={T}, batch {args.batch_size}, "
          f"device {device} ({torch.get_num_threads()} threads), {args.dtype}, attention {args.attn}\n")
    print("| method | forwards per batch | dropout applications / pass | examples/s | MC efficiency | accuracy | "
          "ECE | NLL |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        eff = f"{r['mc_efficiency']:.3f}" if r["mc_efficiency"] is not None else ""
        print(f"| {r['method']} | {r['forwards']} | {r['dropout_per_pass']} | {r['examples_per_s']:.1f} | {eff} | "
              f"{r['accuracy']:.4f} | {r['ece']:.4f} | {r['nll']:.4f} |")
    ok_full = best_full["mc_efficiency"] >= 0.9
    ok_trunk = speedup >= 4
    print(f"\nbest full MC ({best_full['method']}): efficiency {best_full['mc_efficiency']:.3f} "
          f"(target >= 0.9): {'PASS' if ok_full else 'FAIL'}")
    print(f"trunk k=1 vs best full MC: {speedup:.2f}x (target >= 4): {'PASS' if ok_trunk else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "samples": T, "device": device, "rows": rows,
                                         "trunk1_speedup": speedup}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
