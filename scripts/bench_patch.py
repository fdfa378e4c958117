"""Time inspect_dropout and apply_dropout on a meta-device Llama built from a 70B-size config (80 layers).

Run: python scripts/bench_patch.py   (target: <= 0.5 s each)
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from dropout_tune import apply_dropout, inspect_dropout, restore_dropout

LLAMA_70B = dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192)


def _median_seconds(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    start = time.perf_counter()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA_70B))
    build = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    n_modules = sum(1 for _ in model.modules())
    sites = inspect_dropout(model)

    def apply_and_restore():
        restore_dropout(model, apply_dropout(model, "attention=0.1"))

    t_inspect = _median_seconds(lambda: inspect_dropout(model))
    # apply alone: alternate the rate so every call really changes all 80 sites
    rates = iter([0.1, 0.0] * 10)
    t_apply = _median_seconds(lambda: apply_dropout(model, {"attention": next(rates)}))
    t_roundtrip = _median_seconds(apply_and_restore)
    print(f"meta Llama-70B config: {n_params / 1e9:.1f}B params, {n_modules} modules, {len(sites)} dropout sites "
          f"(built in {build:.1f} s)")
    print("| operation | median seconds (7 runs) | target |")
    print("|---|---|---|")
    print(f"| inspect_dropout | {t_inspect:.4f} | <= 0.5 |")
    print(f"| apply_dropout (80 sites change) | {t_apply:.4f} | <= 0.5 |")
    print(f"| apply + restore | {t_roundtrip:.4f} | |")


if __name__ == "__main__":
    main()
