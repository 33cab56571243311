import os

import keras
import tensorflow as tf

IMAGE_SIGNATURE = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def outputs_probabilities(model):
    """Whether a semantic model ends in a softmax (else it returns logits)."""
    return model.layers[-1].get_config().get("activation") == "softmax"


def semantic_serving_fn(model):
    """uint8 images of any size in; `class_map` and `probabilities` out."""
    is_softmax = outputs_probabilities(model)

    def serve(images):
        scores = model(images, training=False)
        probabilities = scores if is_softmax else tf.nn.softmax(scores, axis=-1)
        return {
            "class_map": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "probabilities": probabilities,
        }

    return serve


def classification_serving_fn(model):
    """uint8 images in; `probabilities`, `transformed_images`, `transform` out.

    For a model without a spatial transformer, `transformed_images` is the
    normalised input and `transform` has no columns.
    """
    from keras_segattn.models.spatial_transformer.mnist_models import transformer_outputs

    view = transformer_outputs(model)

    def serve(images):
        logits, warped, theta = view(images, training=False)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "transformed_images": warped,
            "transform": theta,
        }

    return serve


SERVING_FUNCTIONS = {"semantic": semantic_serving_fn, "classification": classification_serving_fn}


def image_signature(model, task):
    """Semantic models take any size; the classifiers their fixed input size."""
    if task == "semantic":
        return IMAGE_SIGNATURE
    return tf.TensorSpec([None, *model.input.shape[1:]], tf.uint8, name="images")


def serving_module(model, task="semantic"):
    """An `ExportArchive` tracking `model` with its `serving_default` signature."""
    if task not in SERVING_FUNCTIONS:
        raise ValueError(
            f"No serving signature for task={task!r}; known: {sorted(SERVING_FUNCTIONS)}."
        )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        tf.function(SERVING_FUNCTIONS[task](model)),
        input_signature=[image_signature(model, task)],
    )
    return archive


def export_saved_model(model, export_dir, name=None, version=1, task="semantic"):
    """Writes a SavedModel in the TF Serving layout `<export_dir>/<name>/<version>/`.

    The `serving_default` signature takes `images`, a uint8 batch of any
    height and width, preprocesses inside the model and returns outputs at
    the input size (`class_map` int32 and `probabilities` float32 for
    semantic segmentation).

    Args:
        model: `keras.Model`. A model of this package.
        export_dir: str. The model base path TF Serving watches.
        name: str. Model name in the path. Defaults to `model.name`.
        version: int. Version folder; must not exist yet, so an export never
            overwrites one being served. Defaults to `1`.
        task: str. Which signature to write. Defaults to `"semantic"`.

    Returns:
        The path of the version folder.
    """
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive int; got version={version!r}.")
    path = os.path.join(os.fspath(export_dir), name or model.name, str(version))
    if os.path.exists(path):
        raise ValueError(
            f"Export path {path!r} already exists; TF Serving versions are "
            "immutable, so pass a new version."
        )
    serving_module(model, task).write_out(path, verbose=False)
    return path
