"""GPU checks (run by scripts/gpu_smoke.sh on a CUDA machine): exactness of live patching on CUDA with SDPA, and
what attention dropout costs there (p > 0 forces SDPA off its fastest kernel; p = 0, built or scheduled, gets it
back). Prints markdown tables."""

from __future__ import annotations

import time

import torch

from dropout_tune import DropoutSpec, apply_dropout, config_overrides
from dropout_tune.testing import tiny_inputs, tiny_model

FAMILIES = ["bert", "roberta", "distilbert", "modernbert", "gpt2", "llama", "qwen2", "phi", "t5", "bart", "vit"]


def exactness() -> None:
    print("| family | attn | train-mode bitwise equal on CUDA | eval equal |")
    print("|---|---|---|---|")
    spec = DropoutSpec.uniform(0.3)
    for family in FAMILIES:
        built = tiny_model(family, attn_implementation="sdpa", **config_overrides(family, spec)).cuda()
        patched = tiny_model(family, attn_implementation="sdpa").cuda()
        patched.load_state_dict(built.state_dict())
        apply_dropout(patched, spec, warn_missing=False)
        inputs = {k: v.cuda() for k, v in tiny_inputs(patched).items()}
        outs = []
        for train in (True, False):
            pair = []
            for model in (built, patched):
                model.train(train)
                torch.manual_seed(7)
                out = model(**inputs)
                pair.append((out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state))
            outs.append(torch.equal(*pair))
        print(f"| {family} | sdpa | {outs[0]} | {outs[1]} |")


def _step_time(model, batch, steps=20) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(**batch).logits.float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def attention_dropout_cost() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    def build(p_attention: float):
        torch.manual_seed(0)
        config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                            attention_probs_dropout_prob=p_attention, hidden_dropout_prob=0.1,
                            max_position_embeddings=512)
        return BertForSequenceClassification(config).cuda().to(torch.bfloat16)

    batch = {"input_ids": torch.randint(1000, 20000, (32, 512), device="cuda"),
             "attention_mask": torch.ones(32, 512, dtype=torch.long, device="cuda")}
    built_01 = _step_time(build(0.1), batch)
    built_00 = _step_time(build(0.0), batch)
    scheduled = build(0.1)
    apply_dropout(scheduled, "attention=0.0")  # what a schedule does once attention dropout reaches 0
    scheduled_00 = _step_time(scheduled, batch)
    print()
    print("BERT-base (bf16, batch 32 x 512 tokens), train step time on one GPU, SDPA attention:")
    print("| attention dropout | ms / step | vs built at 0 |")
    print("|---|---|---|")
    for label, t in (("0.1 (built)", built_01), ("0 (built)", built_00), ("0.1 -> 0 by apply_dropout", scheduled_00)):
        print(f"| {label} | {t * 1e3:.1f} | {t / built_00:.2f}x |")


if __name__ == "__main__":
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    exactness()
    attention_dropout_cost()
