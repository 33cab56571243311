"""Loading what the package saved: models and the run configs beside them.

`load_model` is the one loader of `.keras` checkpoints for the recipes, the
command line, the export flow and users; `keras_segattn.models.task_of` says
which task a loaded model belongs to, from the registry alone.
"""

import json
import os

import keras_segattn.models  # noqa: F401  (registers every custom object)
from keras_segattn.core.saving import load_keras_file


def load_model(path, argument="model_path"):
    """Loads a `.keras` checkpoint saved by this package, uncompiled.

    Raises:
        ValueError: naming `argument` and the path, if it is not a file or
            not a Keras model.
    """
    return load_keras_file(path, argument)


def run_config_path(model_path):
    """Where a model exported with its run's arguments keeps them:
    `<model>.run.json` beside `<model>.keras`."""
    stem = os.path.splitext(os.path.abspath(model_path))[0]
    return stem + ".run.json"


def read_run_config(model_path):
    """The arguments of the run that made `model_path`: its own
    `<model>.run.json` (an exported model, `run_config_path`), else the
    `run.json` of the run folder holding it, or `{}` for a model saved
    elsewhere. Only the model's own folder is read: a `run.json` further
    up belongs to another run and must not set, say, the image size."""
    own = run_config_path(model_path)
    folder = os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")
    for path in (own, folder):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    return {}
