"""Every registered model through the converters a Keras user reaches for
(`model.export(format="litert" | "onnx")`, `TFLiteConverter.from_keras_model`
with builtins only), each run in its stock runtime and compared with Keras,
through the shared helper `keras_segattn.testing.check_standard_exports`."""

import keras
import numpy as np
import pytest

from keras_segattn.models import create_model, list_models
from keras_segattn.testing import check_standard_exports, nonzero_weights

pytestmark = pytest.mark.slow

IMAGE_SIZE = 64  # for the dimensions a model leaves free


def random_inputs(model, rng):
    """A batch of two for each input: images in [0, 255], the rest in
    [0, 1), integer inputs (class ids) in {0, 1, 2}."""
    arrays = []
    for tensor in keras.tree.flatten(model.inputs):
        shape = [2, *(IMAGE_SIZE if d is None else d for d in tensor.shape[1:])]
        if np.issubdtype(np.dtype(tensor.dtype), np.integer):
            arrays.append(rng.integers(0, 3, shape).astype(tensor.dtype))
        else:
            scale = 255.0 if len(shape) == 4 and shape[-1] in (1, 3) else 1.0
            arrays.append((rng.uniform(size=shape) * scale).astype("float32"))
    return arrays if len(arrays) > 1 else arrays[0]


@pytest.mark.parametrize("name", list_models())
def test_every_model_through_the_standard_converters(name, rng, tmp_path):
    model = create_model(name, preset="tiny")
    model.set_weights(nonzero_weights(model))  # zero-initialised heads would compare zeros
    inputs = random_inputs(model, rng)
    expected = model(inputs, training=False)
    check_standard_exports(model, inputs, expected, str(tmp_path), atol=5e-5)
