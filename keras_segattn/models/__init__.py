"""Model builders, reachable by name through the registry."""

# Importing the families registers their builders.
from keras_segattn.models import (  # noqa: F401
    captioning,
    deconvnet,
    fcn,
    instance,
    scene,
    spatial_transformer,
)
from keras_segattn.models.registry import create_model, get_model_spec, list_models, register_model

__all__ = ["create_model", "get_model_spec", "list_models", "register_model"]
