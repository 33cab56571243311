"""Model builders, reachable by name through the registry."""

import importlib
import pkgutil

# Importing the families registers their builders.
from keras_segattn.models import (  # noqa: F401
    captioning,
    instance,
    semantic,
    spatial_transformer,
)
from keras_segattn.models.registry import (
    create_model,
    get_model_spec,
    list_models,
    list_presets,
    register_model,
)


def _register_every_builder():
    """Imports every module of the families, so that a new builder file
    registers itself (`register_model`) without being listed anywhere."""
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)


_register_every_builder()

__all__ = ["create_model", "get_model_spec", "list_models", "list_presets", "register_model"]
