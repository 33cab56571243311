"""A timm-style registry: every model is a named builder function."""

import dataclasses
from collections.abc import Callable

_REGISTRY = {}

# The tasks a registered model can have. "patch" is the patch classifier of
# the scene-labelling family: trained on patches, scored densely.
TASKS = ("semantic", "patch", "instance", "captioning", "classification")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: str. The registry name, e.g. `"fcn8s"`.
        builder: callable. Returns a compiled-ready `keras.Model`.
        task: str. One of `TASKS`: decides the recipe that trains it, how
            it is scored, its export signature and its CLI commands.
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

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got task={task!r} for {name!r}.")

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
    model = get_model_spec(name).builder(**kwargs)
    if model.name != name:  # task_of() finds a saved model's task by its name
        raise RuntimeError(f"The builder of {name!r} returned a model named {model.name!r}.")
    return model


def task_of(model):
    """The task of a model built by `create_model` (or loaded from one).

    The registry is the one source of truth: a model keeps its registry
    name as `model.name` through `.keras` files, and the name gives the
    task.

    Raises:
        ValueError: for a model whose name is not registered (e.g. renamed
            or built by hand).
    """
    name = getattr(model, "name", None)
    if name not in _REGISTRY:
        raise ValueError(
            f"model {name!r} is not a registered model (its name must be one of "
            f"{', '.join(list_models())}); build it with create_model()."
        )
    return _REGISTRY[name].task
