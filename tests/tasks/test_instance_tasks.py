"""Every instance model answers the same `detect` through its task object:
one list of per-image dicts, the structure the COCO scorer reads."""

import numpy as np
import pytest

from keras_segattn.data import load_instance_dataset
from keras_segattn.models import create_model, list_models
from keras_segattn.models.instance import sds_parts
from keras_segattn.tasks import task_of

INSTANCE_MODELS = list_models(task="instance")


@pytest.fixture(scope="module")
def shapes():
    data, info = load_instance_dataset("shapes", "val", num_images=2, image_size=48)
    return data, info


def tiny(name, num_classes):
    return create_model(name, preset="tiny", num_classes=num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", INSTANCE_MODELS)
def test_every_instance_model_detects_in_one_structure(name, shapes):
    data, info = shapes
    model = tiny(name, info.num_classes)
    _, serving = task_of(model).serving_model(model)
    predictions = serving.detect(model, data)
    assert len(predictions) == 2
    for prediction, example in zip(predictions, data.as_numpy_iterator()):
        assert {"image_id", "boxes", "scores", "labels", "masks"} <= set(prediction)
        assert int(prediction["image_id"]) == int(example["image_id"])
        count = len(prediction["scores"])
        assert np.shape(prediction["boxes"]) == (count, 4)
        assert np.shape(prediction["labels"]) == (count,)
        assert np.shape(prediction["masks"]) == (count, *example["images"].shape[:2])
    scores = serving.score_instances(model, data, info.num_classes)
    for key in ("mask_AP", "mAPr@0.5", "mAPr@0.7", "box_AP", "predict_seconds_per_image"):
        assert key in scores, key


def test_the_parts_of_an_sds_network_are_read_in_one_place(shapes):
    _, info = shapes
    model = tiny("sds", info.num_classes)
    parts = sds_parts(model)
    assert parts.num_classes == info.num_classes
    assert parts.crop_size == model.inputs[0].shape[1]
    with pytest.raises(ValueError, match="detector must be an sds model"):
        sds_parts(tiny("hypercolumns", info.num_classes), "detector")
