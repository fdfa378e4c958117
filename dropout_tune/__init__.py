"""dropout-tune: dropout as a first-class, schedulable, measurable knob for Hugging Face transformers."""

from .roles import ROLES, Role
from .spec import DropoutSpec

__version__ = "0.1.0"

__all__ = ["ROLES", "Role", "DropoutSpec", "__version__"]
