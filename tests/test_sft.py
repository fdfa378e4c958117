"""DropoutScheduleCallback works unchanged with TRL's SFTTrainer on a decoder with injected and LoRA sites."""

import pytest
from transformers import TrainerCallback

from dropout_tune import inspect_dropout
from dropout_tune.callbacks import DropoutScheduleCallback
from dropout_tune.loading import resolve_model_path
from dropout_tune.testing import tiny_config

trl = pytest.importorskip("trl")
peft = pytest.importorskip("peft")

STEPS = 4
SCHEDULE = {"hidden": {"shape": "linear", "start": 0.2, "end": 0.0},
            "lora": {"shape": "off_after", "p": 0.1, "at": 0.5}}


class _RatesProbe(TrainerCallback):
    """Records, at each step's start (after the schedule callback), the rates of injected and LoRA sites."""

    def __init__(self):
        self.rates = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        seen = {}
        for site in inspect_dropout(model):
            if site.kind == "injected" or site.role == "lora":
                seen.setdefault(site.role, set()).add(site.p)
        self.rates.append(seen)


def test_sft_trainer_follows_the_schedule_on_injected_and_lora_sites(tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    config = tiny_config("llama", vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(config)
    rows = Dataset.from_dict({"text": [f"the movie number {i} was {'good' if i % 2 else 'bad'}" for i in range(8)]})
    args = trl.SFTConfig(output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=2, max_length=32,
                         learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                         eos_token=tokenizer.sep_token, dataloader_num_workers=0)
    schedule = DropoutScheduleCallback(SCHEDULE)
    probe = _RatesProbe()
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                             peft_config=peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                         target_modules=["q_proj", "v_proj"]),
                             callbacks=[schedule, probe])
    trainer.train()

    expected = [{role: {p} for role, p in schedule.schedule_set.rates_at(step, STEPS).items()} for step in range(STEPS)]
    assert probe.rates == expected
    assert [r["lora"] for r in probe.rates] == [{0.1}, {0.1}, {0.0}, {0.0}]
    injected = [s for s in inspect_dropout(trainer.model) if s.kind == "injected"]
    assert len(injected) == 2 * config.num_hidden_layers and {s.role for s in injected} == {"hidden"}
    logged = [entry["dropout/hidden"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged == [expected[step]["hidden"].pop() for step in range(STEPS)]
