"""Tasks and data sets: GLUE (hub or local TSVs), local tables, and embedded offline tasks.

Layers, each module importing only earlier ones: `taskspec` (TaskSpec, split and metric names); `catalog`
(the registered tasks) and `splits`; one loader per source (`embedded` with `cache`, `glue`, `local`); `tasks`
(`load_task`, which dispatches by source).

Example:
    >>> from dropout_tune.data import get_task, task_text_fields
    >>> task_text_fields(get_task("rotten_tomatoes"))
    ('text',)
"""

from .cache import DataUnavailableError, cache_root
from .catalog import DEFAULT_TASK, TASKS, get_task, task_text_fields
from .embedded import prepare
from .tasks import load_task
from .taskspec import SPLITS, TaskSpec

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
