"""Benchmark dropout schedules under torch.compile (inductor): graphs compiled and step time, side by side.

Variants, each its own MiniLM (the embedded all-MiniLM-L6-v2, SDPA attention, sequence classification):

* no compile, dropout 0.1 as loaded;
* compile, dropout as loaded and never touched (the float path: what compile gives without a schedule);
* compile + constant 0.1, linear 0.1 -> 0 over the run, off_after:0.1 at half the run, each applied by
  ``DropoutScheduler`` (so through ``apply_dropout``) after every step.

Targets: graphs <= 2 for every schedule; the scheduled compiled step >= 0.95x the speed of the constant-rate one.
A step is forward, backward, AdamW and the scheduler's step. Each variant starts from ``torch._dynamo.reset()``, so
its graph count is its own (dynamo would otherwise reuse one model's graphs for the next, identical one); inductor's
on-disk cache makes the recompiles of identical graphs cheap. Step time is the median over the steps after the
warm-up that compiled nothing: CPU time of this process on CPU (other load on a shared machine disturbs it less than
wall time), synchronized wall time on CUDA. The run is on CPU, and also on CUDA when there is one.

    python scripts/bench_compile.py [--steps 10] [--batch 4] [--seq 32] [--threads 1]   (about 3-5 minutes on CPU)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Optional

import torch
import torch._dynamo
from torch._dynamo.utils import counters
from transformers.utils import logging as hf_logging

from dropout_tune.callbacks import DropoutScheduler
from dropout_tune.loading import load_model

SCHEDULES = {
    "compile + constant 0.1": "0.1",
    "compile + linear 0.1 -> 0": "linear:0.1:0",
    "compile + off_after 0.1 at 0.5": "off_after:0.1:at=0.5",
}


class Variant:
    """One model, its optimizer, maybe a compiled wrapper and a schedule; counts its graphs and times its steps."""

    def __init__(self, label: str, device: str, batch: dict, steps: int, compiled: bool,
                 schedule: Optional[str] = None):
        torch._dynamo.reset()
        self.graphs_at_start = counters["stats"]["unique_graphs"]
        torch.manual_seed(0)
        self.label = label
        self.model = load_model("minilm", num_labels=2, attn_implementation="sdpa").to(device).train()
        self.model.config.problem_type = "single_label_classification"  # else set in the first forward: a recompile
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.scheduler = DropoutScheduler(self.model, schedule, total_steps=steps) if schedule else None
        self.compiled = compiled
        self.forward = torch.compile(self.model) if compiled else self.model
        self.batch = {key: value.to(device) for key, value in batch.items()}
        self.device = device
        self.seconds: list[float] = []

    def graphs_so_far(self) -> int:
        return counters["stats"]["unique_graphs"] - self.graphs_at_start

    def run(self, steps: int, warmup: int) -> None:
        for step in range(steps):
            self.step(timed=step >= warmup)
        self.graphs = self.graphs_so_far()  # before the next variant compiles its own

    def _clock(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def step(self, timed: bool) -> None:
        graphs_before = self.graphs_so_far()
        start = self._clock()
        self.forward(**self.batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        elapsed = self._clock() - start
        if timed and self.graphs_so_far() == graphs_before:  # a step that compiled is not a step time
            self.seconds.append(elapsed)


def make_batch(batch_size: int, seq_len: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch_size, seq_len), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(batch_size) % 2}


def run(device: str, args: argparse.Namespace) -> list[Variant]:
    batch = make_batch(args.batch, args.seq)
    setups = [("no compile", False, None), ("compile, rates as loaded (no schedule)", True, None)]
    setups += [(label, True, schedule) for label, schedule in SCHEDULES.items()]
    variants = []
    for label, compiled, schedule in setups:
        variant = Variant(label, device, batch, args.steps, compiled, schedule)
        variant.run(args.steps, args.warmup)
        variants.append(variant)
        print(f"  {device}: {label}: {variant.graphs} graphs, {len(variant.seconds)} steps timed", flush=True)
    return variants


def table(device: str, variants: list[Variant]) -> str:
    constant = statistics.median(next(v for v in variants if v.label.startswith("compile + constant")).seconds)
    lines = [f"| {device}: variant | graphs | step ms (median) | speed vs compile + constant |",
             "|---|---:|---:|---:|"]
    for variant in variants:
        median = statistics.median(variant.seconds) if variant.seconds else float("nan")
        graphs = variant.graphs if variant.compiled else "-"
        lines.append(f"| {variant.label} | {graphs} | {median * 1000:.1f} | {constant / median:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per variant (the schedules' length)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each variant")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: no OpenMP spin-waiting inflating CPU time on a busy machine)")
    args = parser.parse_args()
    if args.steps <= args.warmup + 2:
        parser.error(f"--steps {args.steps}: must exceed --warmup ({args.warmup}) by at least 3")
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, inductor, {args.steps} steps per variant (first {args.warmup} untimed), "
          f"batch {args.batch} x {args.seq} tokens, {args.threads} CPU threads\n")
    for device in devices:
        start = time.perf_counter()
        variants = run(device, args)
        print(table(device, variants))
        print(f"\n({device}: {time.perf_counter() - start:.0f} s including compilation)\n")


if __name__ == "__main__":
    main()
