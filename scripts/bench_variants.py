"""Benchmark the dropout variants: the training step time of each mask kind (and DropHead) against ``element`` at
the same rate, side by side.

Variants, each its own MiniLM (the embedded all-MiniLM-L6-v2, SDPA attention, sequence classification), all at
rate 0.1 on the ``hidden`` role: ``element`` (the baseline), ``per_sequence``, ``token``, ``example``, ``gaussian``,
``alpha``, and ``element + head=0.1`` (DropHead added). A step is forward, backward and AdamW.

The machine is noisy, so the variants are interleaved step by step (every round runs each variant once, in a
rotating order) and the ratio reported is the median over rounds of the paired ratio (variant step / element step
of the same round), with its 25-75% spread. Target: every kind within 1.10x of ``element``, counted as met only
when the upper end of the spread is below 1.10. Step time is this process's CPU time on CPU (other load on a
shared machine disturbs it less than wall time), synchronized wall time on CUDA. ``--compile`` runs every variant
under ``torch.compile`` (inductor) after a warm-up that compiles.

    python scripts/bench_variants.py [--rounds 20] [--batch 8] [--seq 64] [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from transformers.utils import logging as hf_logging

from dropout_tune import apply_dropout
from dropout_tune.loading import load_model

VARIANTS = {
    "element": "hidden=0.1",
    "per_sequence": "hidden=0.1:mask=per_sequence",
    "token": "hidden=0.1:mask=token",
    "example": "hidden=0.1:mask=example",
    "gaussian": "hidden=0.1:mask=gaussian",
    "alpha": "hidden=0.1:mask=alpha",
    "element + head=0.1": "hidden=0.1,head=0.1",
}
TARGET = 1.10


class Variant:
    def __init__(self, spec: str, device: str, batch: dict, compiled: bool):
        torch.manual_seed(0)
        self.model = load_model("minilm", num_labels=2, attn_implementation="sdpa").to(device).train()
        self.model.config.problem_type = "single_label_classification"
        apply_dropout(self.model, spec, warn_missing=False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.batch = {key: value.to(device) for key, value in batch.items()}
        self.device = device

    def step(self) -> float:
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter() if cuda else time.process_time()
        self.forward(**self.batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() if cuda else time.process_time()) - start


def run(device: str, rounds: int, batch_size: int, seq: int, compiled: bool) -> list[tuple]:
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (batch_size, seq), generator=generator),
             "attention_mask": torch.ones(batch_size, seq, dtype=torch.long),
             "labels": torch.randint(0, 2, (batch_size,), generator=generator)}
    variants = {label: Variant(spec, device, batch, compiled) for label, spec in VARIANTS.items()}
    for variant in variants.values():  # warm-up (and compilation) outside the timed rounds
        variant.step()
        variant.step()
    times: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:  # rotate who goes first
            times[label].append(variants[label].step())
    rows = []
    for label in labels:
        ratios = sorted(t / e for t, e in zip(times[label], times["element"]))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        rows.append((label, statistics.median(times[label]) * 1000, statistics.median(ratios), q[0], q[2]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="run every variant under torch.compile (inductor)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        rows = run(device, args.rounds, args.batch, args.seq, args.compile)
        mode = "compiled (inductor)" if args.compile else "eager"
        print(f"\n{device}, {mode}: hidden 0.1, batch {args.batch} x {args.seq}, {args.rounds} interleaved rounds")
        print("| variant | step ms (median) | vs element (median of paired ratios) | 25-75% | within 1.10x |")
        print("|---|---:|---:|---|---|")
        for label, ms, ratio, low, high in rows:
            verdict = "—" if label == "element" else ("yes" if high < TARGET else "no" if low > TARGET else
                                                      "unclear (spread crosses 1.10)")
            print(f"| {label} | {ms:.1f} | {ratio:.3f}x | {low:.3f}-{high:.3f} | {verdict} |")


if __name__ == "__main__":
    main()
