"""Regularisation next to dropout: the Trainer's decay rule and label smoother, reproduced for plain loops."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LabelSmoother

from dropout_tune.regularization import (
    RegularizationConfig,
    decay_parameter_names,
    head_loss,
    label_smoothed_cross_entropy,
    make_optimizer,
    param_groups,
    rdrop_forward,
    rdrop_loss,
)
from dropout_tune.testing import tiny_config, tiny_inputs, tiny_model

torch.set_num_threads(1)


def make_trainer(model, tmp_path, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **kwargs)
    return Trainer(model=model, args=args)


def group_ids(groups):
    return {group["weight_decay"]: {id(p) for p in group["params"]} for group in groups}


# ---- weight decay groups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["bert", "llama", "t5", "modernbert"])
def test_decay_names_follow_the_trainer_rule(model_type, tmp_path):
    model = tiny_model(model_type)
    expected = make_trainer(model, tmp_path).get_decay_parameter_names(model)
    names = decay_parameter_names(model)
    assert names == expected
    assert not any("bias" in n or "norm" in n.lower() for n in names)
    assert any(n.endswith("weight") for n in names)


def test_param_groups_match_the_trainer_optimizer(tmp_path):
    model = tiny_model("bert")
    trainer = make_trainer(model, tmp_path, weight_decay=0.01)
    trainer.create_optimizer()
    theirs = group_ids([g for g in trainer.optimizer.param_groups if g["params"]])
    ours = group_ids(param_groups(model, 0.01))
    assert ours == theirs
    assert set(ours) == {0.01, 0.0}


def test_param_groups_cover_trainable_parameters_once_and_skip_frozen():
    model = tiny_model("bert")
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable


def test_exclude_embeddings_moves_every_embedding_table_to_no_decay():
    model = tiny_model("bert")
    embedding_names = {f"{path}.weight" for path, m in model.named_modules() if isinstance(m, nn.Embedding)}
    assert len(embedding_names) == 3  # word, position, token type
    with_embeddings = set(decay_parameter_names(model))
    without = set(decay_parameter_names(model, exclude_embeddings=True))
    assert with_embeddings - without == embedding_names
    decayed = group_ids(param_groups(model, 0.01, exclude_embeddings=True))[0.01]
    assert id(model.bert.embeddings.word_embeddings.weight) not in decayed


def test_exclude_embeddings_covers_bare_position_and_special_token_parameters():
    from transformers import ViTModel

    model = ViTModel(tiny_config("vit"), use_mask_token=True, add_pooling_layer=False)
    bare = {"embeddings.position_embeddings", "embeddings.cls_token", "embeddings.mask_token"}
    assert bare <= set(decay_parameter_names(model))  # the Trainer's rule decays them
    without = set(decay_parameter_names(model, exclude_embeddings=True))
    assert not bare & without
    assert set(decay_parameter_names(model)) - without == bare  # and nothing else (the patch projection stays)
    decayed = group_ids(param_groups(model, 0.01, exclude_embeddings=True))[0.01]
    assert id(model.embeddings.cls_token) not in decayed


def test_exclude_embeddings_catches_a_tied_lm_head():
    model = AutoModelForCausalLM.from_config(tiny_config("gpt2"))
    assert model.lm_head.weight is model.transformer.wte.weight
    decayed = group_ids(param_groups(model, 0.01, exclude_embeddings=True))[0.01]
    assert id(model.lm_head.weight) not in decayed
    assert "lm_head.weight" not in decay_parameter_names(model, exclude_embeddings=True)
    assert "lm_head.weight" in decay_parameter_names(model)


def test_make_optimizer_uses_the_config():
    model = tiny_model("bert")
    config = RegularizationConfig(weight_decay=0.05, exclude_embeddings_from_decay=True)
    optimizer = make_optimizer(model, config, lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == 1e-3 for g in optimizer.param_groups)
    assert group_ids(optimizer.param_groups) == group_ids(param_groups(model, 0.05, exclude_embeddings=True))


# ---- label smoothing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_the_trainer_label_smoother_for_classification(epsilon):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=g)
    labels = torch.randint(0, 5, (6,), generator=g)
    expected = LabelSmoother(epsilon=epsilon)({"logits": logits}, labels)
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, labels, epsilon), expected)


def test_label_smoothing_equals_the_trainer_label_smoother_for_tokens_with_padding():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, 4:] = -100
    labels[2, :2] = -100
    expected = LabelSmoother(epsilon=0.1)({"logits": logits}, labels)
    ours = label_smoothed_cross_entropy(logits, labels, 0.1)
    torch.testing.assert_close(ours, expected)
    # The padded positions really are left out: changing their logits changes nothing.
    logits[0, 5] += 100.0
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, labels, 0.1), ours)


def test_label_smoothing_zero_is_plain_cross_entropy_and_smoothing_changes_the_loss():
    logits = torch.tensor([[3.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    assert torch.equal(label_smoothed_cross_entropy(logits, labels, 0.0), F.cross_entropy(logits, labels))
    assert label_smoothed_cross_entropy(logits, labels, 0.2) > F.cross_entropy(logits, labels)
    with pytest.raises(ValueError, match="epsilon: 1.0 is outside"):
        label_smoothed_cross_entropy(logits, labels, 1.0)


# ---- R-Drop ----------------------------------------------------------------------------------------------------


def test_rdrop_loss_is_half_of_the_papers_eq_3():
    """Liang et al. 2021, eq. 3: L = NLL1 + NLL2 + alpha * (KL(P1||P2) + KL(P2||P1)) / 2; we return L / 2."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    labels = torch.tensor([0, 2, -100, 1])
    keep = labels != -100
    log_p, log_q = F.log_softmax(a[keep], -1), F.log_softmax(b[keep], -1)
    kl_pq = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")  # KL(p || q)
    kl_qp = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    nll = F.cross_entropy(a, labels) + F.cross_entropy(b, labels)
    eq3 = nll + 0.7 * (kl_pq + kl_qp) / 2
    torch.testing.assert_close(rdrop_loss(a, b, labels, alpha=0.7), eq3 / 2)
    torch.testing.assert_close(rdrop_loss(a, b, labels, alpha=0.7), rdrop_loss(b, a, labels, alpha=0.7))
    torch.testing.assert_close(rdrop_loss(a, a, labels, alpha=5.0), F.cross_entropy(a, labels))


def test_rdrop_regression_uses_the_squared_difference_between_passes():
    g = torch.Generator().manual_seed(3)
    y1, y2, target = torch.randn(5, 1, generator=g), torch.randn(5, 1, generator=g), torch.randn(5, generator=g)
    expected = 0.5 * (F.mse_loss(y1.squeeze(), target) + F.mse_loss(y2.squeeze(), target)) \
        + 0.5 * 0.3 * F.mse_loss(y1, y2)
    torch.testing.assert_close(rdrop_loss(y1, y2, target, alpha=0.3, problem_type="regression"), expected)
    torch.testing.assert_close(rdrop_loss(y1, y1, target, alpha=9.0, problem_type="regression"),
                               F.mse_loss(y1.squeeze(), target))


def test_rdrop_multi_label_uses_the_bernoulli_kl():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    target = (torch.rand(3, 4, generator=g) > 0.5).float()
    p, q = torch.sigmoid(a), torch.sigmoid(b)
    kl = lambda x, y: x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()  # noqa: E731
    bce = F.binary_cross_entropy_with_logits(a, target) + F.binary_cross_entropy_with_logits(b, target)
    expected = 0.5 * (bce + 2.0 * ((kl(p, q) + kl(q, p)) / 2).mean())
    torch.testing.assert_close(rdrop_loss(a, b, target, alpha=2.0, problem_type="multi_label_classification"),
                               expected)


@pytest.mark.parametrize("num_labels, labels", [
    (3, torch.tensor([0, 2, 1, 1])),  # single-label classification
    (1, torch.tensor([0.5, -1.0, 2.0, 0.0])),  # regression
    (3, torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]])),  # multi-label
], ids=["single_label", "regression", "multi_label"])
def test_head_loss_equals_the_heads_own_loss(num_labels, labels):
    model = tiny_model("bert", num_labels=num_labels).eval()
    inputs = tiny_inputs(model, batch_size=4)
    with torch.no_grad():
        outputs = model(**inputs, labels=labels)
    ours = head_loss(outputs.logits, labels, model.config.problem_type)
    torch.testing.assert_close(ours, outputs.loss)
    # normalised by the items of a larger (accumulated) batch when the Trainer says how many there are
    torch.testing.assert_close(head_loss(outputs.logits, labels, model.config.problem_type, num_items=8),
                               outputs.loss * labels.numel() / 8)


def test_label_smoothing_outside_single_label_classification_is_refused():
    with pytest.raises(ValueError, match="label_smoothing: 0.1 needs single-label classification"):
        head_loss(torch.zeros(2, 1), torch.zeros(2), "regression", label_smoothing=0.1)


def test_rdrop_forward_uses_two_dropout_passes():
    model = tiny_model("bert", hidden_dropout_prob=0.3).train()
    inputs = dict(tiny_inputs(model, batch_size=4), labels=torch.tensor([0, 1, 2, 0]))
    torch.manual_seed(0)
    loss, first = rdrop_forward(model, inputs, alpha=1.0)
    no_kl = F.cross_entropy(first.logits, inputs["labels"])
    assert loss.requires_grad
    assert not torch.allclose(loss, no_kl)  # the passes differ, so the KL term is positive
    model.eval()  # without dropout the passes agree and only the cross-entropy is left
    loss, first = rdrop_forward(model, inputs, alpha=1.0)
    torch.testing.assert_close(loss, F.cross_entropy(first.logits, inputs["labels"]))


# ---- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"label_smoothing": 1.0}, "label_smoothing: 1.0 is outside [0, 1)"),
        ({"label_smoothing": -0.1}, "label_smoothing: -0.1 is outside [0, 1)"),
        ({"weight_decay": -0.01}, "weight_decay: -0.01 must be >= 0"),
        ({"weight_decay": float("nan")}, "weight_decay: nan is not a finite number"),
        ({"rdrop_alpha": "big"}, "rdrop_alpha: 'big' is not a finite number"),
        ({"exclude_embeddings_from_decay": "yes"}, "exclude_embeddings_from_decay: 'yes' is not a boolean"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, message):
    with pytest.raises(ValueError) as err:
        RegularizationConfig(**kwargs)
    assert str(err.value).startswith(message)


def test_config_round_trips_and_feeds_training_arguments(tmp_path):
    config = RegularizationConfig(label_smoothing=0.1, weight_decay=0.01, rdrop_alpha=1)
    assert RegularizationConfig(**config.to_dict()) == config
    assert config.rdrop_alpha == 1.0 and isinstance(config.rdrop_alpha, float)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **config.trainer_kwargs())
    assert args.label_smoothing_factor == 0.1 and args.weight_decay == 0.01
