"""dropout-tune: dropout as a first-class, schedulable, measurable knob for Hugging Face transformers.

Example:
    >>> from dropout_tune import DropoutSpec, apply_dropout, inspect_dropout   # doctest: +SKIP
"""

from .loading import load_model, resolve_model_path
from .metric_modules import metric_path
from .patching import (
    DropoutSite,
    PatchReport,
    apply_dropout,
    config_overrides,
    current_rates,
    dropout_overrides,
    inspect_dropout,
    inspect_stochastic_depth,
    restore_dropout,
)
from .roles import ROLES, Role
from .spec import DropoutSpec

__version__ = "0.1.0"

__all__ = [
    "ROLES",
    "DropoutSite",
    "DropoutSpec",
    "PatchReport",
    "Role",
    "__version__",
    "apply_dropout",
    "config_overrides",
    "current_rates",
    "dropout_overrides",
    "inspect_dropout",
    "inspect_stochastic_depth",
    "load_model",
    "metric_path",
    "resolve_model_path",
    "restore_dropout",
]
