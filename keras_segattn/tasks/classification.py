"""Classification of distorted MNIST digits: the Spatial Transformer
Networks' CNN, FCN, ST-CNN and ST-FCN."""

import numpy as np
import tensorflow as tf

from keras_segattn.data.distortions import distorted_mnist
from keras_segattn.data.mnist import load_mnist
from keras_segattn.models.spatial_transformer.mnist_models import transformer_outputs
from keras_segattn.tasks.base import Task, register_task


def classification_serving_fn(model):
    """uint8 images in; `probabilities`, `transformed_images`, `transform` out.

    For a model without a spatial transformer, `transformed_images` is the
    normalised input and `transform` has no columns.
    """
    view = transformer_outputs(model)

    def serve(images):
        logits, warped, theta = view(images, training=False)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "transformed_images": warped,
            "transform": theta,
        }

    return serve


@register_task
class ClassificationTask(Task):
    """A digit per image: trained cell by cell by `segattn stn-table`, whose
    cells report their last epoch (the paper's protocol: nothing is
    selected on the test error they print every epoch, so no `monitor`),
    served as probabilities with the transformer's output."""

    name = "classification"
    train_command = "stn-table"
    evaluate_command = "stn-table"

    def serving_functions(self, model):
        return {"serving_default": classification_serving_fn(model)}

    def image_size_is_free(self, model):
        return False

    def bytes_input_size(self, model):
        return tuple(model.input.shape[1:3])

    def sample_inputs(self, model, data_spec, image_size, count=32):
        size = model.input.shape[1]
        digits = tuple(a[:count] for a in load_mnist(data_spec, "test"))
        data = distorted_mnist("test", "RTS" if size == 42 else "R", source=digits)
        return [{"images": np.round(x.numpy()[None] * 255).astype(np.uint8)} for x, _ in data]

    def labels(self, model, data_spec, run):
        return [str(digit) for digit in range(int(model.output.shape[-1]))]

    def score_signature(self, signature, data, split, count, distortion=None, **_):
        """The % error on distorted MNIST (`distortion`)."""
        if distortion is None:
            raise ValueError(
                "an exported classifier is scored on a distortion ('R', 'RTS', "
                "'P' or 'E'); got distortion=None."
            )
        images, labels = load_mnist(data, split)
        if count is not None:
            images, labels = images[:count], labels[:count]
        dataset = distorted_mnist(split, distortion, source=(images, labels)).batch(500)
        wrong = total = 0
        for x, y in dataset:
            pixels = tf.cast(tf.round(x * 255.0), tf.uint8)
            predicted = tf.argmax(signature(images=pixels)["probabilities"], axis=-1)
            wrong += int(tf.reduce_sum(tf.cast(predicted != tf.cast(y, tf.int64), tf.int32)))
            total += int(y.shape[0])
        return {"error_percent": 100.0 * wrong / total}
