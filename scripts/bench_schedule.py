"""Benchmark the dropout schedule callback on a small BERT (the embedded all-MiniLM-L6-v2), CPU training steps.

Prints markdown tables; every variant is measured side by side in one run, interleaved step by step:

* step time with ``DropoutScheduleCallback`` vs without (target: ratio <= 1.01), for a flat schedule and for one
  whose rate changes at every step (the worst case: the model is patched every step). Both sides of a pair run on
  the *same* model instance, alternating steps, so the ratio isolates the callback from instance-to-instance
  differences (memory layout) and from drifting machine load;
* step time once an ``off_after`` schedule has reached 0 vs a model built with dropout 0 (target <= 1.05), and vs
  dropout 0.1 throughout (the saving). These need separately built models.

The callback is driven through its Trainer hooks (``on_train_begin`` / ``on_step_begin`` with a real
``TrainerState``), exactly as the Trainer calls them, around a plain forward/backward/AdamW step, so Trainer
bookkeeping does not blur the timings. Times are CPU time of this process (one thread), which other load on a shared
machine disturbs less than wall time; the time spent inside the callback is also measured directly.

    python scripts/bench_schedule.py [--batch 2] [--seq 64] [--rounds 30] [--threads 1]   (about 1-2 minutes)
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from transformers import TrainerControl, TrainerState
from transformers.utils import logging as hf_logging

from dropout_tune.callbacks import DropoutScheduleCallback
from dropout_tune.loading import load_model
from dropout_tune.patching import current_rates

SCHEDULE_LENGTH = 100_000  # long, so a linear ramp stays near 0.1 over the steps we time while changing every step


class Runner:
    """One model, its optimizer and a TrainerState; steps with or without a callback."""

    def __init__(self, dropout: float, batch: dict, schedule=None, start_step: int = 0):
        torch.manual_seed(0)
        self.model = load_model("minilm", dropout=dropout, num_labels=2, attn_implementation="sdpa").train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.batch = batch
        self.state = TrainerState(max_steps=SCHEDULE_LENGTH, global_step=start_step)
        self.control = TrainerControl()
        self.callback = DropoutScheduleCallback(schedule) if schedule is not None else None
        if self.callback is not None:
            self.callback.on_train_begin(None, self.state, self.control, model=self.model)

    def step(self, with_callback: bool) -> tuple[float, float]:
        """One training step; returns (CPU seconds of the whole step, seconds inside the callback)."""
        cpu = time.process_time()
        hook = 0.0
        if with_callback:
            start = time.perf_counter()
            self.callback.on_step_begin(None, self.state, self.control, model=self.model)
            hook = time.perf_counter() - start
        self.model(**self.batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1
        return time.process_time() - cpu, hook


def make_batch(batch_size: int, seq_len: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch_size, seq_len), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(batch_size) % 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds; one step per variant each")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.simplefilter("ignore")
    batch = make_batch(args.batch, args.seq)

    flat = Runner(0.1, batch, schedule="all=0.1")  # the schedule equals the built rates: nothing ever changes
    ramp = Runner(0.1, batch, schedule="all=linear:0.1:0.09")  # a new rate at every step
    off = Runner(0.1, batch, schedule="all=off_after:0.1:at=0.5", start_step=SCHEDULE_LENGTH // 2)
    zero = Runner(0.0, batch)
    assert set(current_rates(off.model).values()) == {0.0}, "off_after should have switched every role off"
    assert set(current_rates(flat.model).values()) == {0.1}

    # name -> (runner, with callback); "none" is the flat runner without its callback (dropout 0.1 throughout).
    variants = {
        "none": (flat, False), "flat": (flat, True),
        "ramp-none": (ramp, False), "ramp": (ramp, True),
        "off": (off, True), "zero": (zero, False),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    hook: dict[str, list[float]] = {name: [] for name in variants}
    start = time.perf_counter()
    for round_index in range(-args.warmup, args.rounds):
        # Rotate the order every round so drift in machine load spreads over all variants.
        names = list(variants)
        names = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in names:
            runner, with_callback = variants[name]
            step_cpu, step_hook = runner.step(with_callback)
            if round_index >= 0:
                cpu[name].append(step_cpu)
                hook[name].append(step_hook)
    total = time.perf_counter() - start
    assert max(current_rates(ramp.model).values()) < 0.1, "the ramp should have moved the rates"

    ms = {name: 1000 * statistics.median(times) for name, times in cpu.items()}

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(cpu[a], cpu[b]))

    rows = [
        ("callback, flat schedule vs no callback (same model)", "flat", "none", "<= 1.01"),
        ("callback, rate changes every step vs no callback (same model)", "ramp", "ramp-none", "<= 1.01"),
        ("off_after reached 0 vs built with dropout 0", "off", "zero", "<= 1.05"),
        ("off_after reached 0 vs dropout 0.1 throughout (the saving)", "off", "none", "< 1 is a saving"),
    ]
    print(f"Small BERT (all-MiniLM-L6-v2: 6 layers, hidden 384, SDPA), training steps of batch {args.batch} x "
          f"{args.seq} tokens with AdamW, {args.threads} CPU thread(s); median CPU time over {args.rounds} "
          f"interleaved steps per variant; {total:.0f} s in all.\n")
    print("| comparison | A (ms/step) | B (ms/step) | A / B (medians) | A / B (median of step pairs) "
          "| A / B (fastest steps) | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, a, b, target in rows:
        print(f"| {label} | {ms[a]:.1f} ({a}) | {ms[b]:.1f} ({b}) | {ms[a] / ms[b]:.3f} | {paired(a, b):.3f} "
              f"| {min(cpu[a]) / min(cpu[b]):.3f} | {target} |")
    print("\nTime spent inside the callback (on_step_begin), the only work it adds to a step:\n")
    print("| variant | callback (ms/step, median) | share of the step |")
    print("|---|---:|---:|")
    for name in ("flat", "ramp", "off"):
        hook_ms = 1000 * statistics.median(hook[name])
        print(f"| {name} | {hook_ms:.3f} | {hook_ms / ms[name]:.2%} |")


if __name__ == "__main__":
    main()
