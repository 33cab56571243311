"""One object per task: what differs between semantic segmentation, patch
classification, instance segmentation, captioning and classification.

Every generic path of the package (the recipes and their run folder,
`segattn`'s commands, the export flow, the scoring of exports) asks a
model's `Task` (`task_of`) instead of comparing task or model names; see
`tasks.base.Task` for what a task decides.
"""

from keras_segattn.tasks import captioning, classification, instance, semantic  # noqa: F401
from keras_segattn.tasks.base import (
    EvaluateOptions,
    Task,
    fit_epochs,
    get_task,
    list_tasks,
    register_task,
    task_of,
)

__all__ = [
    "EvaluateOptions",
    "Task",
    "fit_epochs",
    "get_task",
    "list_tasks",
    "register_task",
    "task_of",
]
