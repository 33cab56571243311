"""Model builders, reachable by name through the registry."""

# Importing the families registers their builders.
from keras_segattn.models import (  # noqa: F401
    captioning,
    instance,
    semantic,
    spatial_transformer,
)
from keras_segattn.models.registry import (
    TASKS,
    create_model,
    get_model_spec,
    list_models,
    register_model,
    task_of,
)

__all__ = ["TASKS", "create_model", "get_model_spec", "list_models", "register_model", "task_of"]
