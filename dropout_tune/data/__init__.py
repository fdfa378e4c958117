"""Tasks and data sets: GLUE (hub or local TSVs), local tables, and embedded offline tasks.

Example:
    >>> from dropout_tune.data import get_task, task_text_fields
    >>> task_text_fields(get_task("rotten_tomatoes"))
    ('text',)
"""

from .cache import DataUnavailableError, cache_root
from .embedded import prepare
from .tasks import DEFAULT_TASK, SPLITS, TASKS, TaskSpec, get_task, load_task, task_text_fields

__all__ = [
    "DEFAULT_TASK",
    "SPLITS",
    "TASKS",
    "DataUnavailableError",
    "TaskSpec",
    "cache_root",
    "get_task",
    "load_task",
    "prepare",
    "task_text_fields",
]
