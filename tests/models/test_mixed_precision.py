"""Every registered model under mixed_float16 and mixed_bfloat16.

Each model's tiny variant goes through `check_mixed_precision`: float32
variables and outputs, outputs equal to the float32 model's within the
policy's tolerance, and one `fit` step of the task's own training set-up
(the recipe's loss, or the model's `compute_loss`), with loss scaling under
float16.
"""

import keras
import numpy as np
import pytest

from keras_segattn.models import create_model, get_model_spec, list_models
from keras_segattn.models.captioning import CaptionLoss, encode_captions
from keras_segattn.recipes.semantic import compile_segmenter
from keras_segattn.testing import check_mixed_precision

RNG = np.random.default_rng(0)


def pixels(*shape):
    return RNG.integers(0, 256, shape).astype("float32")


def fitter(inputs, targets, loss=None, metrics=None):
    """A `fit(model)` that compiles with Adam and takes one step."""

    def fit(model):
        model.compile(keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
        size = len(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        return model.fit(inputs, targets, batch_size=size, epochs=1, verbose=0).history

    return fit


def semantic(name):
    images = pixels(2, 37, 50, 3)
    labels = RNG.integers(0, 3, (2, 37, 50)).astype("int32")
    labels[:, :3] = 255

    def fit(model):
        compile_segmenter(model, 3, ignore_class=255)  # the recipe's loss and metrics
        return model.fit(images, labels, batch_size=2, epochs=1, verbose=0).history

    return {"inputs": images, "fit": fit}


def classification(name):
    images = pixels(4, 28, 28, 1)
    labels = np.arange(4) % 10
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {"inputs": images, "fit": fitter(images, labels, loss, ["accuracy"])}


def patch(name):
    patches = pixels(4, 17, 17, 3)
    labels = np.arange(4) % 3
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {"inputs": patches, "fit": fitter(patches, labels, loss)}


def detector(name):
    images = pixels(2, 40, 48, 3)
    boxes = np.full((2, 2, 4), -1.0, "float32")
    labels = np.full((2, 2), -1, "int32")
    masks = np.zeros((2, 2, 40, 48), "uint8")
    for b in range(2):
        x1, y1 = 4 + 6 * b, 8
        boxes[b, 0] = (x1, y1, x1 + 16, y1 + 16)
        labels[b, 0] = 1 + b
        masks[b, 0, y1 : y1 + 16, x1 : x1 + 16] = 1
    targets = {"boxes": boxes, "labels": labels, "masks": masks}

    # Inference ranks an untrained network's near-tied scores (top-k, NMS):
    # any rounding reorders them, so the dense outputs before the ranking
    # (training mode: features, objectness and box deltas) are compared.
    def compared(model, inputs):
        outputs = model(inputs, training=True)
        return [outputs[k] for k in ("features", "objectness", "box_deltas")]

    return {"inputs": images, "fit": fitter(images, targets), "compared": compared}


def hypercolumns(name):
    images = pixels(2, 40, 36, 3)
    boxes = np.array([[[2, 3, 20, 30], [0, 0, 36, 40], [5.5, 5, 9, 12.5]]] * 2, "float32")
    classes = np.array([[1, 2, 1], [2, 2, 1]], "int32")
    inputs = [images, boxes, classes]
    targets = (RNG.random((2, 3, 8, 8)) > 0.5).astype("float32")
    return {"inputs": inputs, "fit": fitter(inputs, targets, "binary_crossentropy")}


def sds(name):
    inputs = [pixels(3, 32, 32, 3), (RNG.random((3, 32, 32)) > 0.5).astype("float32")]
    targets = [np.array([0, 1, 2]), RNG.random((3, 4, 4)).astype("float32")]
    loss = ["sparse_categorical_crossentropy", "binary_crossentropy"]
    return {"inputs": inputs, "fit": fitter(inputs, targets, loss)}


def captioner(name):
    spec = get_model_spec(name)
    images = pixels(2, *spec.tiny["image_size"], 3)
    captions = ["a red square on grass", "a blue circle"]
    input_ids, targets = encode_captions(captions, spec.tiny["vocabulary"], spec.tiny["max_length"])
    inputs = [images, input_ids]
    return {"inputs": inputs, "fit": fitter(inputs, targets, CaptionLoss())}


EXAMPLES = {
    "semantic": semantic,
    "classification": classification,
    "patch": patch,
    "captioning": captioner,
    "rpn": detector,
    "mnc": detector,
    "hypercolumns": hypercolumns,
    "sds": sds,
}


def example(name):
    return EXAMPLES.get(name, EXAMPLES.get(get_model_spec(name).task))(name)


def test_every_registered_model_has_an_example():
    missing = [
        n for n in list_models() if n not in EXAMPLES and get_model_spec(n).task not in EXAMPLES
    ]
    assert not missing


@pytest.mark.parametrize("name", list_models())
def test_mixed_precision(name):
    spec = get_model_spec(name)
    case = example(name)

    def build():
        keras.utils.set_random_seed(0)
        return create_model(name, **spec.tiny)

    check_mixed_precision(build, case["inputs"], fit=case["fit"], compared=case.get("compared"))


def test_the_check_catches_a_float16_output():
    # The check is not vacuous: a model whose head follows the policy fails.
    def build():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(inputs))

    with pytest.raises(AssertionError, match="float outputs must be float32"):
        check_mixed_precision(build, np.ones((2, 4), "float32"))
