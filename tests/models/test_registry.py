"""The model registry: names, tasks, presets, and every builder found."""

import ast
import pathlib

import pytest

from keras_segattn.models import create_model, get_model_spec, list_models, list_presets
from keras_segattn.tasks import Task, get_task

MODELS = pathlib.Path(__file__).resolve().parents[2] / "keras_segattn" / "models"


def registered_in_source():
    """The names of every `@register_model("<name>", ...)` in models/."""
    names = set()
    for path in MODELS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "register_model"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_builder_file_registers_itself():
    # A new builder file needs no import line anywhere to be found.
    assert registered_in_source() == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_task_object_and_a_tiny_preset(name):
    spec = get_model_spec(name)
    assert isinstance(get_task(spec.task), Task)
    if spec.serving_task:
        assert isinstance(get_task(spec.serving_task), Task)
    assert "tiny" in list_presets(name) and spec.presets["tiny"] == spec.tiny


def test_a_preset_gives_builder_arguments_that_keywords_override():
    model = create_model("fcn8s", preset="tiny", num_classes=5)
    assert model.output.shape[-1] == 5  # the keyword wins
    assert model.get_layer("block1_conv1").filters == 4  # width 0.0625 from the preset
    assert {"shapes", "coco_light"} <= set(list_presets("mnc"))
    assert "shapes" in list_presets("show_attend_tell")
    with pytest.raises(ValueError, match="'fcn8s' has no preset='large'; its presets: tiny"):
        create_model("fcn8s", preset="large")
