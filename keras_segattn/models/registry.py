"""A timm-style registry: every model is a named builder function."""

import dataclasses
from collections.abc import Callable

_REGISTRY = {}

# The preset the recipes start from on a generated dataset (the built-in
# shapes: small images, a light model for a CPU), where a model has one.
GENERATED_PRESET = "shapes"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: str. The registry name, e.g. `"fcn8s"`.
        builder: callable. Returns a compiled-ready `keras.Model`.
        task: str. The name of its `keras_segattn.tasks.Task`, which
            decides the command that trains it, how it is scored, its
            export signatures and the labels that travel with it.
        paper: str. The paper it reproduces.
        tiny: dict. Keyword arguments of a very small variant, used by the
            tests and the quick benchmarks (also the preset `"tiny"`).
        serving_task: str or `None`. For a model whose detection loop runs
            on the host (SDS, Hypercolumns), the task of the network that
            is exported and scored (`"region_scoring"`,
            `"box_segmentation"`); `None`: its `task`.
        presets: dict. Named builder arguments (`create_model(name,
            preset=...)`), kept beside the family: `"tiny"`, and e.g.
            `"shapes"`, the light variant the recipes train on the built-in
            shapes.
    """

    name: str
    builder: Callable
    task: str
    paper: str
    tiny: dict
    serving_task: str | None = None
    presets: dict = dataclasses.field(default_factory=dict)


def register_model(name, task, paper, tiny=None, serving_task=None, presets=None):
    """Decorator that adds a builder function to the registry under `name`
    (the fields of `ModelSpec`)."""

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered.")
        named = {"tiny": dict(tiny or {}), **{k: dict(v) for k, v in (presets or {}).items()}}
        _REGISTRY[name] = ModelSpec(
            name, builder, task, paper, dict(tiny or {}), serving_task, named
        )
        return builder

    return decorator


def list_presets(name):
    """The preset names of the model registered under `name`, sorted."""
    return sorted(get_model_spec(name).presets)


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


def create_model(name, preset=None, **kwargs):
    """Builds the model registered under `name`.

    Args:
        name: str. One of `list_models()`.
        preset: str or `None`. Start from these builder arguments (one of
            `list_presets(name)`, e.g. `"tiny"`); `kwargs` override them.
        **kwargs: passed to the builder, e.g. `num_classes`, `weights`,
            `width`.

    Returns:
        A `keras.Model`.

    Examples:

    ```python
    model = keras_segattn.models.create_model("fcn8s", num_classes=11, width=0.25)
    model = keras_segattn.models.create_model("mnc", preset="shapes", num_classes=4)
    ```
    """
    spec = get_model_spec(name)
    if preset is not None:
        if preset not in spec.presets:
            raise ValueError(
                f"{name!r} has no preset={preset!r}; its presets: {', '.join(list_presets(name))}."
            )
        kwargs = {**spec.presets[preset], **kwargs}
    model = spec.builder(**kwargs)
    if model.name != name:  # tasks.task_of() finds a saved model's task by its name
        raise RuntimeError(f"The builder of {name!r} returned a model named {model.name!r}.")
    return model
