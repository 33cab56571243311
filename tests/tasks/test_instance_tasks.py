"""Every instance model answers the same `detect` through its task object:
one list of per-image dicts, the structure the COCO scorer reads."""

import inspect

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


def _detector_options(model, num_classes):
    """What `model.detect` needs besides the images: a model that segments
    a detector's boxes (its `detect` takes `detector=`) gets a tiny
    detector, the first instance model whose own `detect` needs none."""
    if "detector" not in inspect.signature(model.detect).parameters:
        return {}
    for name in INSTANCE_MODELS:
        detector = tiny(name, num_classes)
        if "detector" not in inspect.signature(detector.detect).parameters:
            return {"detector": detector}
    raise AssertionError("no instance model detects on its own")


@pytest.mark.parametrize("name", INSTANCE_MODELS)
def test_every_instance_model_answers_detect_with_the_same_padded_structure(name, shapes):
    data, info = shapes
    model = tiny(name, info.num_classes)
    images = np.stack([e["images"] for e in data.as_numpy_iterator()])
    found = model.detect(images, **_detector_options(model, info.num_classes))
    found = {k: np.asarray(v) for k, v in found.items()}
    assert set(found) == {"boxes", "scores", "classes", "masks", "num_detections"}
    slots = found["scores"].shape[1]
    assert found["boxes"].shape == (2, slots, 4) and found["boxes"].dtype == np.float32
    assert found["classes"].shape == (2, slots) and found["classes"].dtype == np.int32
    assert found["masks"].shape == (2, slots, *images.shape[1:3])
    assert found["masks"].dtype == np.uint8 and found["num_detections"].shape == (2,)
    for row, count in enumerate(found["num_detections"]):
        assert 0 <= count <= slots
        assert (found["classes"][row, count:] == 0).all()  # padding
        assert (found["classes"][row, :count] >= 1).all()  # foreground classes
        assert not found["masks"][row, count:].any()


def test_a_box_segmentation_network_segments_given_boxes_or_a_detectors(shapes):
    data, info = shapes
    model = tiny("hypercolumns", info.num_classes)
    examples = list(data.as_numpy_iterator())
    images = np.stack([e["images"] for e in examples])
    boxes = [np.array([[2, 3, 20, 30], [0, 0, 40, 40]], np.float32), np.zeros((0, 4))]
    classes = [np.array([1, 2]), np.zeros(0, np.int32)]
    found = model.detect(images, boxes=boxes, classes=classes)
    assert found["num_detections"].tolist() == [2, 0]
    np.testing.assert_array_equal(found["boxes"][0], boxes[0])
    np.testing.assert_array_equal(found["classes"][0], [1, 2])
    with pytest.raises(ValueError, match="detector="):
        model.detect(images)  # neither boxes nor a detector
    with pytest.raises(ValueError, match="one array per image"):
        model.detect(images, boxes=boxes[:1], classes=classes[:1])


class _NeverAsked:
    """A detector that fails the test if a model hands it the images: the
    model must refuse bad images itself, not leave it to its detector."""

    def detect(self, images):
        raise AssertionError(f"images of shape {np.shape(images)} reached the detector unchecked")


@pytest.mark.parametrize("name", INSTANCE_MODELS)
def test_every_instance_model_refuses_what_is_not_a_batch_of_rgb_images(name, shapes):
    data, info = shapes
    model = tiny(name, info.num_classes)
    image = next(data.as_numpy_iterator())["images"]
    takes_detector = "detector" in inspect.signature(model.detect).parameters
    options = {"detector": _NeverAsked()} if takes_detector else {}
    for bad, expected in (
        (image, "rank 4"),  # one image, not a batch
        (image[None, ..., :1], "3 channels"),
        (np.zeros((1, 1, 1, 3), np.uint8), "smaller than the minimum"),
    ):
        with pytest.raises(ValueError, match=expected):
            model.detect(bad, **options)


def test_sds_refuses_float_pixels_its_region_proposals_cannot_read(shapes):
    data, info = shapes
    image = next(data.as_numpy_iterator())["images"]
    with pytest.raises(ValueError, match=r"images must be uint8"):
        tiny("sds", info.num_classes).detect(image[None].astype(np.float32))
