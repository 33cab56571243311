"""keras_segattn: segmentation and visual attention models for Keras 3.

The architectures of the lecture "Segmentation and Attention" as trainable,
exportable Keras models. Build one by name with
`keras_segattn.models.create_model("fcn8s", num_classes=21)`.

`import keras_segattn` loads nothing heavy: each floor of the package
(`models`, `data`, `evaluation`, `recipes`, `export`, ...) is imported the
first time it is used, so a serving or model-only user never pays for the
dataset, COCO and plotting stacks. The floors are listed in the
design notes of the documentation (`docs/design.md`).
"""

import importlib

__version__ = "0.1.0"

# Every public subpackage and module, imported on first attribute access.
_SUBMODULES = (
    "checkpoints",
    "core",
    "data",
    "evaluation",
    "export",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "postprocess",
    "recipes",
    "testing",
    "viz",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
