import os
import shutil

import keras
import tensorflow as tf

from keras_segattn.core.precision import float32_model
from keras_segattn.core.validation import check_int, check_size
from keras_segattn.layers.image_preprocessing import ImagePreprocessing

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


def captioning_tokens_serving_fn(model):
    """uint8 images of any size in; greedy `token_ids` and `attention` out.

    The numeric half of `captioning_serving_fn`, and what TFLite gets (the
    `"tokens"` signature): images are resized (bilinear) to
    `model.image_size` and decoded by `model.decode_greedy`, a Python loop
    unrolled over `max_length` steps, all builtin TFLite ops. `token_ids`
    int32 `(batch, max_length)` hold the words up to `<end>` included,
    then `<pad>` (0); `attention` float32 `(batch, max_length, grid_h,
    grid_w)` the weights of every generated word, zeros after `<end>`.
    """

    def serve(images):
        return model.decode_greedy(model.resize_images(images))

    return serve


def captioning_serving_fn(model):
    """uint8 images of any size in; `token_ids`, `attention`, `words`, `captions` out.

    `token_ids` and `attention` as in `captioning_tokens_serving_fn`;
    `words` (tf.string, `(batch, max_length)`) the vocabulary entry of
    every generated word, `""` at `<end>` and padding; `captions`
    (tf.string, `(batch,)`) the words joined by spaces. The vocabulary is
    a constant of the graph. String joins are not TFLite builtins, so a
    TFLite model is converted from the `"tokens"` signature instead, which
    returns `token_ids` and `attention` only; map ids to words with the
    vocabulary in the model's config.
    """
    tokens = captioning_tokens_serving_fn(model)
    vocabulary = tf.constant(model.vocabulary)
    pad_id, end_id = model.token_id("<pad>"), model.token_id("<end>")

    def serve(images):
        outputs = tokens(images)
        token_ids = outputs["token_ids"]
        is_word = tf.logical_and(tf.not_equal(token_ids, pad_id), tf.not_equal(token_ids, end_id))
        words = tf.where(is_word, tf.gather(vocabulary, token_ids), "")
        spaced = tf.where(is_word, words + " ", "")
        captions = tf.strings.strip(tf.strings.reduce_join(spaced, axis=-1))
        return {**outputs, "words": words, "captions": captions}

    return serve


def instance_serving_fn(model):
    """uint8 images of any size in; `boxes`, `scores`, `classes`, `masks`,
    `num_detections` out (`model.detect`).

    `boxes` float32 `(batch, D, 4)` `"xyxy"` pixels, `scores` float32
    `(batch, D)`, `classes` int32 `(batch, D)`, `masks` uint8 `(batch, D,
    height, width)` at the image's resolution (0/1) and `num_detections`
    int32 `(batch,)`; `D` is the model's fixed number of detections, the
    entries after `num_detections` zero. Builtin TFLite ops only, at any
    image size.
    """

    def serve(images):
        return model.detect(images)

    return serve


SERVING_FUNCTIONS = {
    "semantic": semantic_serving_fn,
    "classification": classification_serving_fn,
    "captioning": captioning_serving_fn,
    "instance": instance_serving_fn,
}
# Signatures written beside `serving_default`, by task: name -> function.
EXTRA_SERVING_FUNCTIONS = {"captioning": {"tokens": captioning_tokens_serving_fn}}


def image_signature(model, task, image_size=None):
    """Semantic and instance models and captioners (which resize inside)
    take any size, or `image_size`; the classifiers their fixed input size."""
    if task in ("semantic", "captioning", "instance"):
        if image_size is None:
            return IMAGE_SIGNATURE
        return tf.TensorSpec([None, *check_size(image_size, "input_size"), 3], tf.uint8, "images")
    fixed = tuple(model.input.shape[1:3])
    if image_size is not None and check_size(image_size, "input_size") != fixed:
        raise ValueError(
            f"A {task} model takes images of its input size {fixed}; got input_size={image_size!r}."
        )
    return tf.TensorSpec([None, *model.input.shape[1:]], tf.uint8, name="images")


def serving_module(model, task="semantic", image_size=None, signatures=None):
    """An `ExportArchive` tracking `model` with its `serving_default` signature
    (and, for `"captioning"`, the TFLite-ready `"tokens"` signature).

    Args:
        model: `keras.Model`.
        task: str. Which serving functions. Defaults to `"semantic"`.
        image_size: `(height, width)` or `None`. Fixes the images' size (for
            a fixed-size TFLite file). Defaults to `None` (any size).
        signatures: list of signature names or `None` (all of the task's).
    """
    if task not in SERVING_FUNCTIONS:
        raise ValueError(
            f"No serving signature for task={task!r}; known: {sorted(SERVING_FUNCTIONS)}."
        )
    functions = {
        "serving_default": SERVING_FUNCTIONS[task],
        **EXTRA_SERVING_FUNCTIONS.get(task, {}),
    }
    if signatures is not None:
        unknown = sorted(set(signatures) - set(functions))
        if unknown:
            raise ValueError(f"A {task} model has signatures {sorted(functions)}; got {unknown}.")
        functions = {k: v for k, v in functions.items() if k in signatures}
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [image_signature(model, task, image_size)]
    check = dict(min_size=minimum_image_size(model), channels=int(signature[0].shape[-1]))
    for name, serving_fn in functions.items():
        archive.add_endpoint(
            name, tf.function(checked_images(serving_fn(model), **check)), input_signature=signature
        )
    return archive


def tflite_archive(model, task=None, input_size=None, signature_key="serving_default"):
    """The `ExportArchive` that TFLite conversion traces: `task`'s serving
    signature `signature_key`, or (`task=None`) the model's own inputs and
    outputs under `signature_key`, with image height and width fixed to
    `input_size` if given. Trace it inside `tflite_builtins_only()`."""
    if task is not None:
        return serving_module(model, task, input_size, signatures=[signature_key])
    specs = []
    for tensor in keras.tree.flatten(model.inputs):
        shape = [None, *tensor.shape[1:]]
        if input_size is not None and len(shape) == 4:
            shape[1:3] = check_size(input_size, "input_size")
        specs.append(tf.TensorSpec(shape, tensor.dtype, name=tensor.name))
    # One argument: the single input, or the list of them (as the model takes).
    structure = [specs[0] if len(specs) == 1 else specs]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        signature_key, tf.function(lambda inputs: model(inputs, training=False)),
        input_signature=structure,
    )  # fmt: skip
    return archive


def minimum_image_size(model):
    """The smallest side the model's `ImagePreprocessing` layers accept (1 if
    it has none)."""
    sizes, stack = [1], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, ImagePreprocessing):
            sizes.append(layer.min_size)
        stack.extend(getattr(layer, "layers", []))
    return max(sizes)


def checked_images(serve, min_size=1, channels=3):
    """`serve` behind a check of what a client sent: a non-empty batch of
    images of at least `min_size` pixels a side with `channels` channels. A
    loaded signature does not enforce its declared shape; without the check
    an empty batch, a 0x0 image or a 4-channel one failed deep in the
    network with a misleading message. The
    check is an `Assert` in the SavedModel; the TFLite converter drops it, so
    the TFLite trace stays builtin-only."""

    def checked(images):
        shape = tf.shape(images)
        # Padded, so that a client's 3-D or 5-D tensor is reported, not indexed.
        dims = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)
        valid = (
            (tf.size(shape) == 4)
            & (dims[0] > 0)
            & (dims[1] >= min_size)
            & (dims[2] >= min_size)
            & (dims[3] == channels)
        )
        check = tf.debugging.Assert(
            valid,
            [
                f"images must be a non-empty batch (batch, height, width, {channels}) of "
                f"{'RGB ' if channels == 3 else ''}images of at least {min_size}x{min_size} "
                "pixels; got shape",
                shape,
            ],
        )
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        return serve(images)

    return checked


def export_saved_model(model, export_dir, name=None, version=1, task="semantic"):
    """Writes a SavedModel in the TF Serving layout `<export_dir>/<name>/<version>/`.

    The `serving_default` signature takes `images`, a uint8 batch of any
    height and width, preprocesses inside the model and returns outputs at
    the input size (`class_map` int32 and `probabilities` float32 for
    semantic segmentation). A captioner's (`task="captioning"`) returns the
    greedy `token_ids`, `attention`, `words` and `captions`, and a second
    signature, `"tokens"`, returns the numeric outputs only, for
    `convert_to_tflite(model, signature_key="tokens", task="captioning")`.
    An instance model's
    (`task="instance"`) returns `boxes`, `scores`, `classes`, `masks` (uint8
    at the image's resolution) and `num_detections`.

    Args:
        model: `keras.Model`. A model of this package.
        export_dir: str. The model base path TF Serving watches.
        name: str. Model name in the path. Defaults to `model.name`.
        version: int. Version folder; must not exist yet, so an export never
            overwrites one being served. Defaults to `1`.
        task: str. Which signature to write. Defaults to `"semantic"`.

    A model trained with mixed precision is exported computing in float32
    (`core.precision.float32_model`), as every export of the package is.

    Returns:
        The path of the version folder.
    """
    path = version_path(export_dir, name or model.name, version)
    staging = stage_saved_model(float32_model(model), path, task)
    return publish(staging, path)


def version_path(export_dir, name, version):
    """`<export_dir>/<name>/<version>`, refused if that version exists."""
    version = check_int(version, "version")
    path = os.path.join(os.fspath(export_dir), name, str(version))
    if os.path.exists(path):
        raise ValueError(
            f"Export path {path!r} already exists; TF Serving versions are "
            "immutable, so pass a new version."
        )
    return path


def stage_saved_model(model, path, task="semantic"):
    """Writes the SavedModel of `path` (a version folder) to a hidden staging
    folder beside it, which TF Serving never loads (not a number), and
    returns the staging folder. Stale staging folders of the same version
    (a killed export) are removed first."""
    parent, version = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    for stale in os.listdir(parent):
        if stale.startswith(f".staging-{version}-"):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    staging = os.path.join(parent, f".staging-{version}-{os.getpid()}")
    serving_module(model, task).write_out(staging, verbose=False)
    return staging


def publish(staging, path):
    """Moves a fully written staging folder to its version folder in one
    rename: a reader sees no version folder, or a whole one."""
    if not os.path.isfile(os.path.join(staging, "saved_model.pb")):
        raise ValueError(f"{staging!r} holds no saved_model.pb; nothing to publish.")
    os.rename(staging, path)
    return path
