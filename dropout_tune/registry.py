"""Where each model family keeps its dropout, by role: the knowledge of dropout-tune, as data.

One FamilyDropout entry per config.model_type (like peft's utils/constants.py) holds everything the library knows
about a family. Adding a family is one entry in FAMILY_DROPOUT plus a tiny config in dropout_tune/testing.py; the
parametrized tests pick it up (docs/adding_a_family.md walks through one). Each entry says

* config_keys: config key -> the roles whose sites the constructor builds from it;
* config_fallbacks: key -> key it falls back to when it is None (BERT's classifier_dropout falls back to
  hidden_dropout_prob);
* sites: "OwnerClass.attribute" (fnmatch patterns allowed) -> role. The attribute can hold an nn.Dropout, an
  nn.Identity placeholder, or a float read by the forward code; the kind is found at run time. A class is named
  rather than a module path because the same attribute name means different roles in different classes
  (BartAttention.dropout is attention dropout, BartEncoderLayer.dropout residual dropout);
* stochastic_depth: layerdrop / drop-path knobs, reported apart and never patched as dropout;
* layers: path of the nn.ModuleList of transformer layers inside model.base_model (MC dropout's trunk mode), or
  None where there is no single stack (encoder-decoders, ALBERT's shared layer groups);
* sdpa: whether transformers has an SDPA attention for the family (False: eager is its only implementation).
* injection: where dropout_tune.injection adds the roles a decoder family has no sites for (None: nothing is
  injected).

The tables were read off transformers 5.x source, and tests/test_registry.py re-derives them for every family: a
tiny model built with a distinct sentinel rate per config key shows which sites pick up which key, every
OwnerClass.attr must name a class of the family that sets that attribute, and the layers path and SDPA flag are
checked on the tiny model.

Example:
    >>> FAMILY_DROPOUT["bert"].config_keys["attention_probs_dropout_prob"]
    ('attention',)
    >>> FAMILY_DROPOUT["bart"].role_of("BartAttention", "dropout")
    'attention'
    >>> FAMILY_DROPOUT["bart"].role_of("BartEncoderLayer", "dropout")
    'hidden'
    >>> trunk_layers_path("bert"), trunk_layers_path("bart")
    ('encoder.layer', None)
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Optional

from .roles import Role


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
        present = {Role.EMBEDDING.value: self.embedding is not None, Role.HIDDEN.value: hidden,
                   Role.ACTIVATION.value: self.activation is not None}
        return tuple(role for role, ok in present.items() if ok)


@dataclass(frozen=True)
class FamilyDropout:
    """Everything the library knows about one model family (see the module docstring). Roles may be given as
    Role members or their names; they are stored as plain strings.

    >>> FamilyDropout(config_keys={"p": (Role.HIDDEN,)}, sites={"FooLayer.dropout": "hidden"}).sites
    {'FooLayer.dropout': 'hidden'}
    """

    config_keys: Mapping[str, tuple[str, ...]]
    sites: Mapping[str, str]
    config_fallbacks: Mapping[str, str] = field(default_factory=dict)
    stochastic_depth: tuple[str, ...] = ()
    layers: Optional[str] = None
    sdpa: bool = True
    injection: Optional[InjectionPoints] = None
    #: ``OwnerClass.attr`` of each attention block's output projection, whose input (the heads' context,
    #: ``(B, T, H * d_head)``) the ``head`` role (DropHead) drops whole heads of
    head_projection: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Plain strings, so that roles print, compare and serialise the same everywhere; Role() rejects a typo.
        keys = {key: tuple(Role(role).value for role in roles) for key, roles in self.config_keys.items()}
        object.__setattr__(self, "config_keys", keys)
        object.__setattr__(self, "sites", {site: Role(role).value for site, role in self.sites.items()})

    def role_of(self, owner_class: str, attr: str) -> Optional[str]:
        """The role of owner_class.attr, or None when it is not a dropout site of this family."""
        return _match(self.sites, f"{owner_class}.{attr}")

    def is_head_projection(self, owner_class: str, attr: str) -> bool:
        return _match(dict.fromkeys(self.head_projection, "x"), f"{owner_class}.{attr}") is not None

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


def _heads(*owners: str, attrs: tuple[str, ...] = ("dropout",)) -> dict[str, Role]:
    """Task-head sites: _heads("BertFor*") covers BertForSequenceClassification.dropout and its siblings."""
    return {f"{owner}.{attr}": Role.CLASSIFIER for owner in owners for attr in attrs}


def _sequence_summary(owner: str) -> dict[str, Role]:
    """The two dropouts of a SequenceSummary head (multiple choice, GPT-2's double heads)."""
    return _heads(owner, attrs=("first_dropout", "last_dropout"))


def _bert_like(prefix: str, heads: Optional[Mapping[str, Role]] = None, **extra_keys: tuple[str, ...]) -> FamilyDropout:
    """BERT and the families that copy its modules under another class-name prefix; heads are the head sites
    beyond the prefix's For* models (RobertaClassificationHead.dropout...)."""
    return FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (Role.EMBEDDING, Role.HIDDEN),
            "attention_probs_dropout_prob": (Role.ATTENTION,),
            "classifier_dropout": (Role.CLASSIFIER,),
            **extra_keys,
        },
        config_fallbacks={"classifier_dropout": "hidden_dropout_prob"},
        sites={
            f"{prefix}Embeddings.dropout": Role.EMBEDDING,
            f"{prefix}SelfAttention.dropout": Role.ATTENTION,
            f"{prefix}CrossAttention.dropout": Role.ATTENTION,
            f"{prefix}SelfOutput.dropout": Role.HIDDEN,
            f"{prefix}Output.dropout": Role.HIDDEN,
            **_heads(f"{prefix}For*"),
            **(heads or {}),
        },
        layers="encoder.layer",
        head_projection=(f"{prefix}SelfOutput.dense",),
    )


def _decoder_only(prefix: str, injection: Optional[InjectionPoints] = None, sdpa: bool = True) -> FamilyDropout:
    """Llama-style decoders: attention dropout is a float on the attention module; the other roles are injected."""
    return FamilyDropout(config_keys={"attention_dropout": (Role.ATTENTION,)},
                         sites={f"{prefix}Attention.attention_dropout": Role.ATTENTION}, layers="layers",
                         sdpa=sdpa, injection=injection or InjectionPoints(),
                         head_projection=(f"{prefix}Attention.o_proj",))


def _encoder_decoder(prefix: str, heads: tuple[str, ...] = ()) -> FamilyDropout:
    """BART-style encoder-decoders: float attributes whose names are shared across roles."""
    return FamilyDropout(
        config_keys={
            "dropout": (Role.EMBEDDING, Role.HIDDEN),
            "attention_dropout": (Role.ATTENTION,),
            "activation_dropout": (Role.ACTIVATION,),
            "classifier_dropout": (Role.CLASSIFIER,),
        },
        sites={
            f"{prefix}Encoder.dropout": Role.EMBEDDING,
            f"{prefix}Decoder.dropout": Role.EMBEDDING,
            f"{prefix}Attention.dropout": Role.ATTENTION,
            f"{prefix}EncoderLayer.dropout": Role.HIDDEN,
            f"{prefix}DecoderLayer.dropout": Role.HIDDEN,
            f"{prefix}EncoderLayer.activation_dropout": Role.ACTIVATION,
            f"{prefix}DecoderLayer.activation_dropout": Role.ACTIVATION,
            **_heads(*heads),
        },
        stochastic_depth=(f"{prefix}Encoder.layerdrop", f"{prefix}Decoder.layerdrop"),
        head_projection=(f"{prefix}Attention.out_proj",),
    )


#: model_type -> everything the library knows about that family.
FAMILY_DROPOUT: dict[str, FamilyDropout] = {
    "bert": _bert_like("Bert"),
    "roberta": _bert_like("Roberta", heads=_heads("RobertaClassificationHead")),
    "xlm-roberta": _bert_like("XLMRoberta", heads=_heads("XLMRobertaClassificationHead")),
    "electra": _bert_like(
        "Electra",
        heads={**_heads("ElectraClassificationHead"), **_sequence_summary("ElectraSequenceSummary")},
        summary_last_dropout=(Role.CLASSIFIER,),
    ),
    "distilbert": FamilyDropout(
        config_keys={
            "dropout": (Role.EMBEDDING, Role.HIDDEN),
            "attention_dropout": (Role.ATTENTION,),
            "seq_classif_dropout": (Role.CLASSIFIER,),
            "qa_dropout": (Role.CLASSIFIER,),
        },
        sites={
            "Embeddings.dropout": Role.EMBEDDING,
            "DistilBertSelfAttention.dropout": Role.ATTENTION,
            "FFN.dropout": Role.HIDDEN,
            **_heads("DistilBertFor*"),
        },
        layers="transformer.layer",
        head_projection=("DistilBertSelfAttention.out_lin",),
    ),
    "albert": FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (Role.EMBEDDING, Role.HIDDEN),
            "attention_probs_dropout_prob": (Role.ATTENTION,),
            "classifier_dropout_prob": (Role.CLASSIFIER,),
        },
        config_fallbacks={"classifier_dropout_prob": "hidden_dropout_prob"},
        sites={
            "AlbertEmbeddings.dropout": Role.EMBEDDING,
            "AlbertAttention.attention_dropout": Role.ATTENTION,
            "AlbertAttention.output_dropout": Role.HIDDEN,
            "AlbertLayer.dropout": Role.HIDDEN,
            **_heads("AlbertFor*", "AlbertSOPHead"),
        },
        head_projection=("AlbertAttention.dense",),
    ),
    "deberta-v2": FamilyDropout(
        config_keys={
            "hidden_dropout_prob": (Role.EMBEDDING, Role.HIDDEN),
            "attention_probs_dropout_prob": (Role.ATTENTION,),
            "pooler_dropout": (Role.CLASSIFIER,),
            "cls_dropout": (Role.CLASSIFIER,),
        },
        config_fallbacks={"cls_dropout": "hidden_dropout_prob"},
        sites={
            "DebertaV2Embeddings.dropout": Role.EMBEDDING,
            # dropout on the relative-position embeddings, fed by hidden_dropout_prob like the token embeddings
            "DisentangledSelfAttention.pos_dropout": Role.EMBEDDING,
            "DisentangledSelfAttention.dropout": Role.ATTENTION,
            "DebertaV2SelfOutput.dropout": Role.HIDDEN,
            "DebertaV2Output.dropout": Role.HIDDEN,
            "ConvLayer.dropout": Role.HIDDEN,
            **_heads("DebertaV2For*", "ContextPooler"),
        },
        layers="encoder.layer",
        sdpa=False,
        head_projection=("DebertaV2SelfOutput.dense",),
    ),
    "modernbert": FamilyDropout(
        config_keys={
            "embedding_dropout": (Role.EMBEDDING,),
            # ModernBERT feeds the attention-output dropout from attention_dropout; by meaning it is residual dropout
            "attention_dropout": (Role.ATTENTION, Role.HIDDEN),
            "mlp_dropout": (Role.ACTIVATION,),
            "classifier_dropout": (Role.CLASSIFIER,),
        },
        sites={
            "ModernBertEmbeddings.drop": Role.EMBEDDING,
            "ModernBertAttention.attention_dropout": Role.ATTENTION,
            "ModernBertAttention.out_drop": Role.HIDDEN,  # nn.Identity when built with attention_dropout == 0
            "ModernBertMLP.drop": Role.ACTIVATION,
            **_heads("ModernBertFor*", attrs=("drop",)),
        },
        layers="layers",
        head_projection=("ModernBertAttention.Wo",),
    ),
    "gpt2": FamilyDropout(
        config_keys={
            "embd_pdrop": (Role.EMBEDDING,),
            "attn_pdrop": (Role.ATTENTION,),
            "resid_pdrop": (Role.HIDDEN,),
            "summary_first_dropout": (Role.CLASSIFIER,),
            "classifier_dropout": (Role.CLASSIFIER,),
        },
        sites={
            "GPT2Model.drop": Role.EMBEDDING,
            "GPT2Attention.attn_dropout": Role.ATTENTION,
            "GPT2Attention.resid_dropout": Role.HIDDEN,
            "GPT2MLP.dropout": Role.HIDDEN,
            **_heads("GPT2For*"),
            **_sequence_summary("GPT2SequenceSummary"),
        },
        layers="h",
        head_projection=("GPT2Attention.c_proj",),
    ),
    "gpt_neox": FamilyDropout(
        config_keys={
            "hidden_dropout": (Role.EMBEDDING, Role.HIDDEN),
            "attention_dropout": (Role.ATTENTION,),
            "classifier_dropout": (Role.CLASSIFIER,),
        },
        sites={
            "GPTNeoXModel.emb_dropout": Role.EMBEDDING,
            "GPTNeoXAttention.attention_dropout": Role.ATTENTION,
            "GPTNeoXLayer.post_attention_dropout": Role.HIDDEN,
            "GPTNeoXLayer.post_mlp_dropout": Role.HIDDEN,
            **_heads("GPTNeoXFor*"),
        },
        layers="layers",
        head_projection=("GPTNeoXAttention.dense",),
    ),
    "llama": _decoder_only("Llama"),
    "mistral": _decoder_only("Mistral"),
    "qwen2": _decoder_only("Qwen2"),
    "qwen3": _decoder_only("Qwen3"),
    "gemma": _decoder_only("Gemma"),
    # Gemma2 normalises each block's output before the residual add: hidden dropout goes after those norms
    "gemma2": _decoder_only("Gemma2", InjectionPoints(attention_output="post_attention_layernorm",
                                                      mlp_output="post_feedforward_layernorm"), sdpa=False),
    # Phi-3 has residual dropout (resid_pdrop) but none on its embeddings (embd_pdrop is unused) or activations
    "phi3": FamilyDropout(
        config_keys={"attention_dropout": (Role.ATTENTION,), "resid_pdrop": (Role.HIDDEN,)},
        sites={
            "Phi3Attention.attention_dropout": Role.ATTENTION,
            "Phi3DecoderLayer.resid_attn_dropout": Role.HIDDEN,
            "Phi3DecoderLayer.resid_mlp_dropout": Role.HIDDEN,
        },
        layers="layers",
        injection=InjectionPoints(attention_output=None, mlp_output=None),
        head_projection=("Phi3Attention.o_proj",),
    ),
    "phi": FamilyDropout(
        config_keys={"embd_pdrop": (Role.EMBEDDING,), "attention_dropout": (Role.ATTENTION,),
                     "resid_pdrop": (Role.HIDDEN,)},
        sites={
            "PhiModel.embed_dropout": Role.EMBEDDING,
            "PhiAttention.attention_dropout": Role.ATTENTION,
            "PhiDecoderLayer.resid_dropout": Role.HIDDEN,
            **_heads("PhiFor*"),
        },
        layers="layers",
        head_projection=("PhiAttention.dense",),
    ),
    "t5": FamilyDropout(
        # one rate for the whole stack: per-role T5 rates exist only as a live patch
        config_keys={"dropout_rate": (Role.EMBEDDING, Role.ATTENTION, Role.HIDDEN, Role.ACTIVATION),
                     "classifier_dropout": (Role.CLASSIFIER,)},
        sites={
            "T5Stack.dropout": Role.EMBEDDING,  # on the embeddings (and, same module, on the final stack output)
            "T5Attention.dropout": Role.ATTENTION,
            "T5LayerSelfAttention.dropout": Role.HIDDEN,
            "T5LayerCrossAttention.dropout": Role.HIDDEN,
            "T5LayerFF.dropout": Role.HIDDEN,
            "T5DenseActDense.dropout": Role.ACTIVATION,
            "T5DenseGatedActDense.dropout": Role.ACTIVATION,
            **_heads("T5ClassificationHead"),
        },
        head_projection=("T5Attention.o",),
    ),
    "bart": _encoder_decoder("Bart", heads=("BartClassificationHead",)),
    "vit": FamilyDropout(
        config_keys={"hidden_dropout_prob": (Role.EMBEDDING, Role.HIDDEN),
                     "attention_probs_dropout_prob": (Role.ATTENTION,)},
        sites={
            "ViTEmbeddings.dropout": Role.EMBEDDING,
            "ViTAttention.attention_dropout": Role.ATTENTION,
            "ViTLayer.dropout": Role.HIDDEN,
        },
        layers="layers",
        head_projection=("ViTAttention.o_proj",),
    ),
    "whisper": _encoder_decoder("Whisper"),
}


def get_family(model_type: Optional[str]) -> Optional[FamilyDropout]:
    """The table entry for model_type (None when unknown)."""
    return FAMILY_DROPOUT.get(model_type or "")


def known_families() -> tuple[str, ...]:
    return tuple(FAMILY_DROPOUT)


def trunk_layers_path(model_type: Optional[str]) -> Optional[str]:
    """Dotted path of the nn.ModuleList of transformer layers inside model.base_model, for MC dropout's trunk
    mode; None for an unknown family or one without a single layer stack.

    >>> trunk_layers_path("gpt2"), trunk_layers_path("t5"), trunk_layers_path("no-such-family")
    ('h', None, None)
    """
    family = get_family(model_type)
    return family.layers if family else None


def supports_sdpa(model_type: Optional[str]) -> bool:
    """Whether transformers has SDPA attention for model_type (unknown families: True, transformers decides).

    >>> supports_sdpa("bert"), supports_sdpa("deberta-v2")
    (True, False)
    """
    family = get_family(model_type)
    return family.sdpa if family else True


# ---- generic discovery, for families not in the table -------------------------------------------------------------

#: float attributes named like a dropout rate (``attention_dropout``, ``attn_pdrop``, ``dropout_p``, ``drop``...).
DROPOUT_ATTR = re.compile(r"dropout|pdrop|(^|_)drop($|_)")
#: stochastic depth, reported apart: never a dropout rate.
STOCHASTIC_DEPTH_ATTR = re.compile(r"layerdrop|layer_drop|drop_path|droppath|stochastic_depth", re.IGNORECASE)

# Ordered: the first rule whose pattern matches "OwnerClass.attr" (case-insensitive) gives the role.
_GENERIC_ROLE_RULES: tuple[tuple[str, str], ...] = (
    (r"(For[A-Z]\w*|ClassificationHead|Pooler|Head|Summary)\.", Role.CLASSIFIER.value),
    (r"\.(activation_dropout|act_dropout|ffn_dropout|relu_dropout|mlp_dropout)$", Role.ACTIVATION.value),
    (r"(attention|attn)\w*\.(resid|out|output|proj)\w*$", Role.HIDDEN.value),
    (r"(attention|attn|Attention)\w*\.|\.(attention|attn)\w*$", Role.ATTENTION.value),
    (r"(embed|embd|emb_)", Role.EMBEDDING.value),
    (r"(Layer|Block|Output|MLP|FFN|FeedForward|Encoder|Decoder)\w*\.|resid|hidden|post_", Role.HIDDEN.value),
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
        if re.search(pattern, name, flags=0 if role == Role.CLASSIFIER else re.IGNORECASE):
            return role
    return None
