"""A timm-style registry: every model is a named builder function."""

import dataclasses
from collections.abc import Callable

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: str. The registry name, e.g. `"fcn8s"`.
        builder: callable. Returns a compiled-ready `keras.Model`.
        task: str. `"semantic"`, `"instance"`, `"captioning"` or
            `"classification"`: decides the export signature and the CLI.
        paper: str. The paper it reproduces.
        tiny: dict. Keyword arguments of a very small variant, used by the
            tests and the quick benchmarks.
    """

    name: str
    builder: Callable
    task: str
    paper: str
    tiny: dict


def register_model(name, task, paper, tiny=None):
    """Decorator that adds a builder function to the registry under `name`."""

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        _REGISTRY[name] = ModelSpec(name, builder, task, paper, dict(tiny or {}))
        return builder

    return decorator


def list_models(task=None):
    """Returns the sorted registry names, optionally only those of one `task`."""
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_model_spec(name):
    """Returns the `ModelSpec` registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown model name={name!r}. Available models: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Builds the model registered under `name`.

    Args:
        name: str. One of `list_models()`.
        **kwargs: passed to the builder, e.g. `num_classes`, `weights`,
            `width`.

    Returns:
        A `keras.Model`.

    Example:

    ```python
    model = keras_segattn.models.create_model("fcn8s", num_classes=11, width=0.25)
    ```
    """
    return get_model_spec(name).builder(**kwargs)
