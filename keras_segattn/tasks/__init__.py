"""One object per task: what differs between semantic segmentation, patch
classification, instance segmentation, captioning and classification.

Every generic path of the package (the recipes and their run folder,
`segattn`'s commands, the export flow, the scoring of exports) asks a
model's `Task` (`task_of`) instead of comparing task or model names; see
`tasks.base.Task` for what a task decides.
"""

from keras_segattn.models.registry import get_model_spec, list_models
from keras_segattn.tasks import captioning, classification, instance, semantic  # noqa: F401
from keras_segattn.tasks.base import EvaluateOptions, Task, get_task, list_tasks, register_task


def task_of(model):
    """The `Task` of a model built by `create_model` (or loaded from one).

    The model registry is the one source of truth: a model keeps its
    registry name as `model.name` through `.keras` files, and its entry
    names its task.

    Args:
        model: a `keras.Model`, or a registry name.

    Raises:
        ValueError: for a model whose name is not registered (e.g. renamed
            or built by hand).
    """
    if isinstance(model, str):  # a registry name: unknown ones are named there
        return get_task(get_model_spec(model).task)
    name = getattr(model, "name", None)
    if name not in list_models():
        raise ValueError(
            f"model {name!r} is not a registered model (its name must be one of "
            f"{', '.join(list_models())}); build it with create_model()."
        )
    return get_task(get_model_spec(name).task)


__all__ = ["EvaluateOptions", "Task", "get_task", "list_tasks", "register_task", "task_of"]
