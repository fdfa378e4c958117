"""Where each model family keeps its dropout, by role: the knowledge of dropout-tune, as data.

One :class:`FamilyDropout` entry per ``config.model_type`` (like peft's ``utils/constants.py``). Adding a family is
one entry in :data:`FAMILY_DROPOUT` plus a tiny config in :mod:`dropout_tune.testing`; the parametrized tests pick it
up. Each entry says

* ``config_keys``: config key -> the roles whose sites the constructor builds from it;
* ``config_fallbacks``: key -> key it falls back to when it is ``None`` (BERT's ``classifier_dropout`` falls back to
  ``hidden_dropout_prob``);
* ``sites``: ``"OwnerClass.attribute"`` (``fnmatch`` patterns allowed) -> role. The attribute can hold an
  ``nn.Dropout``, an ``nn.Identity`` placeholder, or a float read by the forward code; the kind is found at run time.
  A class is named rather than a module path because the same attribute name means different roles in different
  classes (``BartAttention.dropout`` is attention dropout, ``BartEncoderLayer.dropout`` residual dropout);
* ``stochastic_depth``: layerdrop / drop-path knobs, reported apart and never patched as dropout;
* ``injection``: where :mod:`dropout_tune.injection` adds the roles a decoder family has no sites for.

The tables were read off transformers 5.x source, and ``tests/test_registry.py`` re-derives them for every family by
building a tiny model with a distinct sentinel rate per config key and checking which sites pick up which key.

Example:
    >>> FAMILY_DROPOUT["bert"].config_keys["attention_probs_dropout_prob"]
    ('attention',)
    >>> FAMILY_DROPOUT["bart"].role_of("BartAttention", "dropout")
    'attention'
    >>> FAMILY_DROPOUT["bart"].role_of("BartEncoderLayer", "dropout")
    'hidden'
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Optional

EMB, ATT, HID, ACT, CLS, LORA = "embedding", "attention", "hidden", "activation", "classifier", "lora"


@dataclass(frozen=True)
class InjectionPoints:
    """Where dropout can be injected into a Llama-style decoder (see :mod:`dropout_tune.injection`).

    Paths are relative to the base model (``layers``, ``embedding``) or to one decoder layer (the others); a role
    whose path is None is not injected (the family builds native sites for it).
    """

    layers: str = "layers"  # ModuleList of decoder layers
    embedding: Optional[str] = "embed_tokens"  # embedding dropout on its output
    attention_output: Optional[str] = "self_attn"  # hidden dropout on its output, before the residual add
    mlp_output: Optional[str] = "mlp"  # hidden dropout on its output, before the residual add
    activation: Optional[str] = "mlp.down_proj"  # activation dropout on its input

    def roles(self) -> tuple[str, ...]:
        hidden = self.attention_output is not None or self.mlp_output is not None
        present = {EMB: self.embedding is not None, HID: hidden, ACT: self.activation is not None}
        return tuple(role for role, ok in present.items() if ok)


@dataclass(frozen=True)
class FamilyDropout:
    """The dropout sites of one model family (see the module docstring)."""

    config_keys: Mapping[str, tuple[str, ...]]
    sites: Mapping[str, str]
    config_fallbacks: Mapping[str, str] = field(default_factory=dict)
    stochastic_depth: tuple[str, ...] = ()
    injection: Optional[InjectionPoints] = None

    def role_of(self, owner_class: str, attr: str) -> Optional[str]:
        """The role of ``owner_class.attr``, or None when it is not a dropout site of this family."""
        return _match(self.sites, f"{owner_class}.{attr}")

    def is_stochastic_depth(self, owner_class: str, attr: str) -> bool:
        return _match(dict.fromkeys(self.stochastic_depth, "x"), f"{owner_class}.{attr}") is not None

    def roles_of_key(self, key: str) -> tuple[str, ...]:
        return self.config_keys.get(key, ())


def _match(table: Mapping[str, str], name: str) -> Optional[str]:
    if name in table:
        return table[name]
    for pattern, value in table.items():
        if "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            return value
    return None


def _heads(prefix: str, attr: str = "dropout") -> dict[str, str]:
    """Task heads: ``XxxForSequenceClassification.dropout``, ``XxxClassificationHead.dropout`` and the like."""
    return {f"{prefix}For*.{attr}": CLS, f"{prefix}ClassificationHead.{attr}": CLS}


def _bert_like(prefix: str, **extra_keys: tuple[str, ...]) -> FamilyDropout:
    """BERT and the families that copy its modules under another class-name prefix."""
    return FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (EMB, HID),
            "attention_probs_dropout_prob": (ATT,),
            "classifier_dropout": (CLS,),
            **extra_keys,
        },
        config_fallbacks={"classifier_dropout": "hidden_dropout_prob"},
        sites={
            f"{prefix}Embeddings.dropout": EMB,
            f"{prefix}SelfAttention.dropout": ATT,
            f"{prefix}CrossAttention.dropout": ATT,
            f"{prefix}SelfOutput.dropout": HID,
            f"{prefix}Output.dropout": HID,
            f"{prefix}SequenceSummary.first_dropout": CLS,
            f"{prefix}SequenceSummary.last_dropout": CLS,
            **_heads(prefix),
        },
    )


def _decoder_only(prefix: str, injection: InjectionPoints = InjectionPoints()) -> FamilyDropout:
    """Llama-style decoders: attention dropout is a float on the attention module; the other roles are injected."""
    return FamilyDropout(config_keys={"attention_dropout": (ATT,)}, sites={f"{prefix}Attention.attention_dropout": ATT},
                         injection=injection)


def _encoder_decoder(prefix: str) -> FamilyDropout:
    """BART-style encoder-decoders: float attributes whose names are shared across roles."""
    return FamilyDropout(
        config_keys={
            "dropout": (EMB, HID),
            "attention_dropout": (ATT,),
            "activation_dropout": (ACT,),
            "classifier_dropout": (CLS,),
        },
        sites={
            f"{prefix}Encoder.dropout": EMB,
            f"{prefix}Decoder.dropout": EMB,
            f"{prefix}Attention.dropout": ATT,
            f"{prefix}EncoderLayer.dropout": HID,
            f"{prefix}DecoderLayer.dropout": HID,
            f"{prefix}EncoderLayer.activation_dropout": ACT,
            f"{prefix}DecoderLayer.activation_dropout": ACT,
            **_heads(prefix),
        },
        stochastic_depth=(f"{prefix}Encoder.layerdrop", f"{prefix}Decoder.layerdrop"),
    )


#: model_type -> where that family keeps its dropout.
FAMILY_DROPOUT: dict[str, FamilyDropout] = {
    "bert": _bert_like("Bert"),
    "roberta": _bert_like("Roberta"),
    "xlm-roberta": _bert_like("XLMRoberta"),
    "electra": _bert_like("Electra", summary_last_dropout=(CLS,)),
    "distilbert": FamilyDropout(
        config_keys={
            "dropout": (EMB, HID),
            "attention_dropout": (ATT,),
            "seq_classif_dropout": (CLS,),
            "qa_dropout": (CLS,),
        },
        sites={
            "Embeddings.dropout": EMB,
            "DistilBertSelfAttention.dropout": ATT,
            "FFN.dropout": HID,
            **_heads("DistilBert"),
        },
    ),
    "albert": FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (EMB, HID),
            "attention_probs_dropout_prob": (ATT,),
            "classifier_dropout_prob": (CLS,),
        },
        config_fallbacks={"classifier_dropout_prob": "hidden_dropout_prob"},
        sites={
            "AlbertEmbeddings.dropout": EMB,
            "AlbertAttention.attention_dropout": ATT,
            "AlbertAttention.output_dropout": HID,
            "AlbertLayer.dropout": HID,
            "AlbertSOPHead.dropout": CLS,
            **_heads("Albert"),
        },
    ),
    "deberta-v2": FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (EMB, HID),
            "attention_probs_dropout_prob": (ATT,),
            "pooler_dropout": (CLS,),
            "cls_dropout": (CLS,),
        },
        config_fallbacks={"cls_dropout": "hidden_dropout_prob"},
        sites={
            "DebertaV2Embeddings.dropout": EMB,
            # dropout on the relative-position embeddings, fed by hidden_dropout_prob like the token embeddings
            "DisentangledSelfAttention.pos_dropout": EMB,
            "DisentangledSelfAttention.dropout": ATT,
            "DebertaV2SelfOutput.dropout": HID,
            "DebertaV2Output.dropout": HID,
            "ConvLayer.dropout": HID,
            "ContextPooler.dropout": CLS,
            **_heads("DebertaV2"),
        },
    ),
    "modernbert": FamilyDropout(
        config_keys={
            "embedding_dropout": (EMB,),
            # ModernBERT feeds the attention-output dropout from attention_dropout; by meaning it is residual dropout
            "attention_dropout": (ATT, HID),
            "mlp_dropout": (ACT,),
            "classifier_dropout": (CLS,),
        },
        sites={
            "ModernBertEmbeddings.drop": EMB,
            "ModernBertAttention.attention_dropout": ATT,
            "ModernBertAttention.out_drop": HID,  # nn.Identity when built with attention_dropout == 0
            "ModernBertMLP.drop": ACT,
            **_heads("ModernBert", "drop"),
        },
    ),
    "gpt2": FamilyDropout(
        config_keys={
            "embd_pdrop": (EMB,),
            "attn_pdrop": (ATT,),
            "resid_pdrop": (HID,),
            "summary_first_dropout": (CLS,),
            "classifier_dropout": (CLS,),
        },
        sites={
            "GPT2Model.drop": EMB,
            "GPT2Attention.attn_dropout": ATT,
            "GPT2Attention.resid_dropout": HID,
            "GPT2MLP.dropout": HID,
            "GPT2SequenceSummary.first_dropout": CLS,
            "GPT2SequenceSummary.last_dropout": CLS,
            **_heads("GPT2"),
        },
    ),
    "gpt_neox": FamilyDropout(
        config_keys={"hidden_dropout": (EMB, HID), "attention_dropout": (ATT,), "classifier_dropout": (CLS,)},
        sites={
            "GPTNeoXModel.emb_dropout": EMB,
            "GPTNeoXAttention.attention_dropout": ATT,
            "GPTNeoXLayer.post_attention_dropout": HID,
            "GPTNeoXLayer.post_mlp_dropout": HID,
            **_heads("GPTNeoX"),
        },
    ),
    "llama": _decoder_only("Llama"),
    "mistral": _decoder_only("Mistral"),
    "qwen2": _decoder_only("Qwen2"),
    "gemma": _decoder_only("Gemma"),
    "qwen3": _decoder_only("Qwen3"),
    # Gemma2 normalises each block's output before the residual add: hidden dropout goes after those norms
    "gemma2": _decoder_only("Gemma2", InjectionPoints(attention_output="post_attention_layernorm",
                                                      mlp_output="post_feedforward_layernorm")),
    # Phi-3 has residual dropout (resid_pdrop) but none on its embeddings (embd_pdrop is unused) or activations
    "phi3": FamilyDropout(
        config_keys={"attention_dropout": (ATT,), "resid_pdrop": (HID,)},
        sites={
            "Phi3Attention.attention_dropout": ATT,
            "Phi3DecoderLayer.resid_attn_dropout": HID,
            "Phi3DecoderLayer.resid_mlp_dropout": HID,
        },
        injection=InjectionPoints(attention_output=None, mlp_output=None),
    ),
    "phi": FamilyDropout(
        config_keys={"embd_pdrop": (EMB,), "attention_dropout": (ATT,), "resid_pdrop": (HID,)},
        sites={
            "PhiModel.embed_dropout": EMB,
            "PhiAttention.attention_dropout": ATT,
            "PhiDecoderLayer.resid_dropout": HID,
            **_heads("Phi"),
        },
    ),
    "t5": FamilyDropout(
        # one rate for the whole stack: per-role T5 rates exist only as a live patch
        config_keys={"dropout_rate": (EMB, ATT, HID, ACT), "classifier_dropout": (CLS,)},
        sites={
            "T5Stack.dropout": EMB,  # on the embeddings (and, same module, on the final stack output)
            "T5Attention.dropout": ATT,
            "T5LayerSelfAttention.dropout": HID,
            "T5LayerCrossAttention.dropout": HID,
            "T5LayerFF.dropout": HID,
            "T5DenseActDense.dropout": ACT,
            "T5DenseGatedActDense.dropout": ACT,
            "T5ClassificationHead.dropout": CLS,
        },
    ),
    "bart": _encoder_decoder("Bart"),
    "vit": FamilyDropout(
        config_keys={"hidden_dropout_prob": (EMB, HID), "attention_probs_dropout_prob": (ATT,)},
        sites={
            "ViTEmbeddings.dropout": EMB,
            "ViTAttention.attention_dropout": ATT,
            "ViTSelfAttention.attention_dropout": ATT,
            "ViTSelfAttention.dropout": ATT,
            "ViTSelfOutput.dropout": HID,
            "ViTOutput.dropout": HID,
            "ViTLayer.dropout": HID,
        },
    ),
    "whisper": _encoder_decoder("Whisper"),
}

# ---- generic discovery, for families not in the table -------------------------------------------------------------

#: float attributes named like a dropout rate (``attention_dropout``, ``attn_pdrop``, ``dropout_p``, ``drop``...).
DROPOUT_ATTR = re.compile(r"dropout|pdrop|(^|_)drop($|_)")
#: stochastic depth, reported apart: never a dropout rate.
STOCHASTIC_DEPTH_ATTR = re.compile(r"layerdrop|layer_drop|drop_path|droppath|stochastic_depth", re.IGNORECASE)

# Ordered: the first rule whose pattern matches "OwnerClass.attr" (case-insensitive) gives the role.
_GENERIC_ROLE_RULES: tuple[tuple[str, str], ...] = (
    (r"(For[A-Z]\w*|ClassificationHead|Pooler|Head|Summary)\.", CLS),
    (r"\.(activation_dropout|act_dropout|ffn_dropout|relu_dropout|mlp_dropout)$", ACT),
    (r"(attention|attn)\w*\.(resid|out|output|proj)\w*$", HID),
    (r"(attention|attn|Attention)\w*\.|\.(attention|attn)\w*$", ATT),
    (r"(embed|embd|emb_)", EMB),
    (r"(Layer|Block|Output|MLP|FFN|FeedForward|Encoder|Decoder)\w*\.|resid|hidden|post_", HID),
)


@lru_cache(maxsize=None)
def guess_role(owner_class: str, attr: str) -> Optional[str]:
    """Role of a dropout site of an unknown family from its owner class and attribute names, or None.

    >>> guess_role("FooSelfAttention", "dropout")
    'attention'
    >>> guess_role("FooEmbeddings", "dropout")
    'embedding'
    >>> guess_role("FooForSequenceClassification", "dropout") is None or "classifier"
    'classifier'
    >>> guess_role("Foo", "dropout") is None
    True
    """
    name = f"{owner_class}.{attr}"
    for pattern, role in _GENERIC_ROLE_RULES:
        if re.search(pattern, name, flags=0 if role == CLS else re.IGNORECASE):
            return role
    return None


def get_family(model_type: Optional[str]) -> Optional[FamilyDropout]:
    """The table entry for ``model_type`` (``None`` when unknown)."""
    return FAMILY_DROPOUT.get(model_type or "")


def known_families() -> tuple[str, ...]:
    return tuple(FAMILY_DROPOUT)
