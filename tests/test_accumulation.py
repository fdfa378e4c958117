"""Gradient accumulation trains exactly as one large batch: batch 8 x 1 step equals batch 4 x 2 accumulated steps
(SGD, no clipping, dropout 0), in the weights and in the logged loss, for every loss DropoutTrainer computes."""

import pytest
import torch

from dropout_tune.recipe import Recipe
from dropout_tune.testing import save_tiny_text_model, write_toy_text_task
from dropout_tune.train import build_trainer


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accumulation")
    save_tiny_text_model(tmp / "model")
    write_toy_text_task(tmp / "data", sizes=(24, 8, 8))
    (tmp / "scores.csv").write_text("text,label\n" + "".join(f"the movie was {'good ' * (i % 4)}fine,{i / 10}\n"
                                                            for i in range(40)))
    return tmp


def _one_step(toy, tmp_path, batch_size, accumulation, task, regularization):
    recipe = Recipe.from_dict({
        "name": "acc", "model": {"name": str(toy / "model")},
        "data": {"task": str(toy / task), "max_length": 16, "max_train": 16},
        "dropout": {"spec": "all=0.0"},
        "regularization": regularization,
        "optim": {"optimizer": "sgd", "learning_rate": 0.5, "max_grad_norm": 0.0, "lr_scheduler": "constant"},
        "training": {"max_steps": 1, "batch_size": batch_size, "gradient_accumulation_steps": accumulation,
                     "logging_steps": 1, "eval_strategy": "no", "seed": 3,
                     "output_dir": str(tmp_path / f"run{batch_size}x{accumulation}")},
    })
    trainer = build_trainer(recipe).trainer
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    return {k: v.detach() - before[k] for k, v in trainer.model.state_dict().items()}, loss


CASES = {
    "cross_entropy": ("data", {}),
    "label_smoothing": ("data", {"label_smoothing": 0.2}),
    "rdrop": ("data", {"rdrop_alpha": 1.0}),
    "regression": ("scores.csv", {}),
    "regression_rdrop": ("scores.csv", {"rdrop_alpha": 1.0}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_accumulated_steps_equal_one_large_batch(toy, tmp_path, case):
    task, regularization = CASES[case]
    update_large, loss_large = _one_step(toy, tmp_path, 8, 1, task, regularization)
    update_accumulated, loss_accumulated = _one_step(toy, tmp_path, 4, 2, task, regularization)
    assert loss_accumulated == pytest.approx(loss_large, rel=1e-5)
    for name, update in update_large.items():
        torch.testing.assert_close(update_accumulated[name], update, rtol=1e-4, atol=1e-7)  # float32 weights ~0.05
    # the step really moved the weights (with a learning rate of 0 every check above would pass)
    assert update_large["classifier.weight"].abs().max() > 1e-3
