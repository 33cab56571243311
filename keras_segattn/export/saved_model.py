import dataclasses
import os
import shutil

import keras
import tensorflow as tf

from keras_segattn.core.images import resize_image_uint8
from keras_segattn.core.kernels import in_tensorflow, in_tflite
from keras_segattn.core.precision import float32_model
from keras_segattn.core.saving import write_text
from keras_segattn.core.validation import check_int, check_size
from keras_segattn.layers.image_preprocessing import ImagePreprocessing
from keras_segattn.tasks import get_task, task_of

# The signature that takes encoded images (every image task has it).
BYTES_SIGNATURE_KEY = "serving_bytes"
# The task's TFLite signature (serving_default, a captioner's tokens) traced
# with builtin operators only, for TFLiteConverter.from_saved_model and
# tf2onnx; the others call TensorFlow's fused kernels, for TF Serving.
PORTABLE_SIGNATURE_KEY = "portable"
BYTES_SIGNATURE = tf.TensorSpec([None], tf.string, name="image_bytes")
# The first bytes of the formats accepted, and the marker that ends a whole file.
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


# What an exported signature serves at most, set at export: the pixels of
# one image, and of a whole batch as the model sees it (a batch of images of
# several sizes is padded to the largest height and width).
DEFAULT_MAX_PIXELS = 2048 * 2048
DEFAULT_MAX_BATCH_PIXELS = 2 * DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """The largest request an exported model serves.

    `max_pixels`: height x width of one image. `max_batch_pixels`: batch x
    height x width of a request, its images padded to the largest height
    and width (what the network and the per-pixel outputs hold). Both are
    checked before anything is decoded or computed (`serving_bytes` reads
    each image's size from its PNG or JPEG header), so a small file that
    would decode to a huge image is refused by its index, not run out of
    memory on.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch_pixels: int = DEFAULT_MAX_BATCH_PIXELS

    def __post_init__(self):
        check_int(self.max_pixels, "max_pixels")
        check_int(self.max_batch_pixels, "max_batch_pixels")
        if self.max_batch_pixels < self.max_pixels:
            raise ValueError(
                f"max_batch_pixels ({self.max_batch_pixels}) must be at least max_pixels "
                f"({self.max_pixels}): a batch of one image is allowed."
            )

    def as_dict(self):
        return dataclasses.asdict(self)


def _is_whole(encoded, index):
    """An `Assert` that `encoded` is a whole PNG or JPEG file (start and end
    markers), naming `image_bytes[index]`; and whether it is a PNG."""
    length = tf.strings.length(encoded)
    padded = tf.strings.join([encoded, b"\0" * 8])  # substr never runs out

    def starts_with(marker):
        return tf.strings.substr(padded, 0, len(marker)) == marker

    def holds(marker):  # split works on bytes: more than one part, the marker is there
        return tf.size(tf.strings.split(encoded, sep=marker)) > 1

    is_png = starts_with(_PNG_START) & holds(_PNG_END)
    is_jpeg = starts_with(_JPEG_START) & holds(_JPEG_END)
    check = tf.debugging.Assert(
        is_png | is_jpeg,
        [
            tf.strings.format(
                "image_bytes[{}] is not a whole JPEG or PNG file (of {} bytes)", (index, length)
            )
        ],
    )
    return check, is_png, padded


def encoded_image_size(encoded, index, max_pixels=None):
    """The `(height, width)` int32 of one PNG or JPEG string, read from its
    header (the PNG IHDR chunk, the JPEG frame header): nothing is decoded.

    `Assert`s, naming `image_bytes[index]`, that the string is a whole PNG
    or JPEG file (start and end markers: not another format, text or a
    truncated upload; bytes after the end marker, which some cameras
    append, are allowed) and, with `max_pixels`, that the image has at most
    that many pixels.
    """
    check, is_png, padded = _is_whole(encoded, index)
    with tf.control_dependencies([check]):

        def png_size():  # IHDR: width, then height, 4 big-endian bytes each
            raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.uint8), tf.int64)
            value = raw[0::4] * 2**24 + raw[1::4] * 2**16 + raw[2::4] * 2**8 + raw[3::4]
            return tf.stack([value[1], value[0]])

        def jpeg_size():
            shape = _or_empty(tf.io.extract_jpeg_shape, encoded, tf.TensorSpec([3], tf.int32))
            check = tf.debugging.Assert(
                tf.size(shape) > 0,
                [tf.strings.format("image_bytes[{}] has a damaged JPEG header", index)],
            )
            with tf.control_dependencies([check]):
                return tf.cast(shape[:2], tf.int64)

        size = tf.cond(is_png, png_size, jpeg_size)
    if max_pixels is not None:
        limit = tf.debugging.Assert(
            size[0] * size[1] <= max_pixels,
            [
                tf.strings.format(
                    "image_bytes[{}] is {}x{} pixels, more than the {} this model serves "
                    "(max_pixels, set at export)",
                    (index, size[0], size[1], max_pixels),
                )
            ],
        )
        with tf.control_dependencies([limit]):
            size = tf.identity(size)
    return tf.cast(size, tf.int32)


def _or_empty(op, value, spec):
    """`op(value)` (of `spec`), or an empty tensor of the same dtype and rank
    where `op` raises, as decoders do on damaged data: the
    graph cannot catch an error, a one-element `tf.data` pipeline with
    `ignore_errors` can, so the caller's `Assert` names the image instead."""

    def run(data):
        result = op(data)
        result.set_shape(spec.shape)
        return result

    fallback = tf.data.Dataset.from_tensors(tf.zeros([0] * spec.shape.rank, spec.dtype))
    result = tf.data.Dataset.from_tensors(value).map(run).ignore_errors()
    return result.concatenate(fallback).take(1).get_single_element()


def decode_image_bytes(encoded, index, channels, size=None, max_pixels=None):
    """Decodes one JPEG or PNG string to a uint8 `(height, width, channels)`
    image, resized (bilinear, rounded) to `size` if given, after the checks
    of `encoded_image_size`.

    Every failure names `image_bytes[index]`: the header checks do, and data
    that the decoder refuses behind a valid header (a damaged PNG chunk, a
    JPEG with a broken scan) is caught in the graph, through a one-element
    `tf.data` pipeline whose `ignore_errors` turns the decoder's error into
    an empty result, which an `Assert` then reports with the index.
    """
    header = encoded_image_size(encoded, index, max_pixels)
    with tf.control_dependencies([header]):
        encoded = tf.identity(encoded)

    def decode(data):
        return tf.io.decode_image(data, channels=channels, expand_animations=False)

    image = _or_empty(decode, encoded, tf.TensorSpec([None, None, channels], tf.uint8))
    check = tf.debugging.Assert(
        tf.size(image) > 0,
        [tf.strings.format("image_bytes[{}] has a valid header but damaged image data", index)],
    )
    with tf.control_dependencies([check]):
        image = tf.identity(image)
    return image if size is None else resize_image_uint8(image, size)


def bytes_serving_fn(serve, task, channels, size=None, limits=None):
    """`serve` (uint8 images in) behind decoding: a batch of encoded JPEG or
    PNG strings in, the same outputs as `serve` out.

    Tasks that take a fixed size (`size`: classifiers, captioners) decode and
    resize every image and run one batch. The others run image by image at
    each image's own size (exactly what `serve` gives for that image alone);
    their per-pixel outputs (`PER_PIXEL_OUTPUTS`) are padded to the largest
    height and width of the batch (`class_map` with -1, the rest with 0),
    and an extra output, `image_sizes` int32 `(batch, 2)`, gives each
    image's `(height, width)` to crop them back.

    `limits` (a `ServingLimits`, default `ServingLimits()`) are checked on
    the images' headers before any is decoded: each image's pixels, and the
    padded batch's (batch x largest height x largest width); the images
    are then decoded one at a time.
    """
    padding = get_task(task).per_pixel_outputs or None
    limits = limits or ServingLimits()

    def serve_bytes(image_bytes):
        count = tf.size(image_bytes)
        check = tf.debugging.Assert(
            (tf.rank(image_bytes) == 1) & (count > 0),
            [
                "image_bytes must be a non-empty batch (a vector) of encoded images; got shape",
                tf.shape(image_bytes),
            ],
        )
        with tf.control_dependencies([check]):
            image_bytes = tf.identity(image_bytes)
        indices = tf.range(tf.size(image_bytes))
        pairs = (image_bytes, indices)
        sizes = tf.map_fn(
            lambda p: encoded_image_size(*p, limits.max_pixels),
            pairs,
            fn_output_signature=tf.int32,
        )
        largest = tf.reduce_max(sizes, axis=0)
        if padding is None:  # every image resized to `size`: only each image is bounded
            spec = tf.TensorSpec([*size, channels], tf.uint8)
            with tf.control_dependencies([sizes]):
                images = tf.map_fn(
                    lambda p: decode_image_bytes(*p, channels, size),
                    pairs,
                    fn_output_signature=spec,
                )
            return serve(images)
        batch_pixels = tf.reduce_prod(tf.cast(tf.concat([[count], largest], axis=0), tf.int64))
        batch_limit = tf.debugging.Assert(
            batch_pixels <= limits.max_batch_pixels,
            [
                tf.strings.format(
                    "image_bytes: {} images padded to {}x{} are {} pixels, more than the {} this "
                    "model serves at once (max_batch_pixels, set at export); send fewer or "
                    "same-sized images",
                    (count, largest[0], largest[1], batch_pixels, limits.max_batch_pixels),
                )
            ],
        )
        traced = tf.function(serve).get_concrete_function(
            tf.TensorSpec([1, None, None, channels], tf.uint8)
        )
        dtypes = {k: v.dtype for k, v in traced.structured_outputs.items()}

        def one_image(pair):
            outputs = serve(decode_image_bytes(*pair, channels)[None])
            padded = {}
            for name, value in outputs.items():
                value = value[0]
                if name in padding:
                    axis, fill = padding[name]
                    extra = largest - tf.shape(value)[axis : axis + 2]
                    widths = tf.scatter_nd([[axis], [axis + 1]], extra, [tf.rank(value)])
                    widths = tf.stack([tf.zeros_like(widths), widths], axis=1)
                    value = tf.pad(value, widths, constant_values=tf.cast(fill, value.dtype))
                padded[name] = value
            return padded

        # After the limit, one image at a time: a network's activations are
        # held for one image, not for several in flight.
        with tf.control_dependencies([batch_limit]):
            outputs = tf.map_fn(one_image, pairs, fn_output_signature=dtypes, parallel_iterations=1)
        return {**outputs, "image_sizes": sizes}

    return serve_bytes


def serving_task(model):
    """The `Task` whose signatures a registered model is served with: its
    task's `serving_model` (SDS's and Hypercolumns' networks have their
    own; a patch classifier is served as the dense labeller it is used as,
    so export it through `serving_model`)."""
    return task_of(model).serving_model(model)[1]


def input_signature(model, task, image_size=None):
    """The `tf.TensorSpec`s a serving signature of `task` takes, in order."""
    return get_task(task).input_signature(model, image_size)


def tracking_archive(model):
    """An `ExportArchive` tracking `model`, each weight stored once.

    Keras 3.15's `track` keeps the `keras.Variable` wrappers while the
    traced endpoints capture the `tf.Variable`s inside them: two objects per
    weight, so the SavedModel stored (and TF Serving loaded) every weight
    twice (keras-team/keras#23553). The tracked collections hold the
    `tf.Variable`s here, which TensorFlow's checkpoint de-duplicates: half
    the file and the server's memory, same outputs.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    tracked = archive._tf_trackable
    for collection in ("variables", "trainable_variables", "non_trainable_variables"):
        variables = getattr(tracked, collection)
        setattr(tracked, collection, [_tf_variable(v) for v in variables])
    return archive


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def serving_module(model, task="semantic", image_size=None, signatures=None, limits=None):
    """An `ExportArchive` tracking `model` with its signatures.

    `serving_default` takes uint8 `images`; `serving_bytes` the same images
    encoded (`image_bytes`, a batch of JPEG or PNG strings, see
    `bytes_serving_fn`) and returns the same outputs; a captioner also has
    the TFLite-ready `"tokens"` signature.

    Args:
        model: `keras.Model`.
        task: a `keras_segattn.tasks.Task` or its name: which serving
            functions (`Task.serving_functions`). Defaults to `"semantic"`.
        image_size: `(height, width)` or `None`. Fixes the images' size (for
            a fixed-size TFLite file). Defaults to `None` (any size).
        signatures: list of signature names or `None` (all of the task's).
        limits: a `ServingLimits` or `None` (its defaults): the largest
            images and requests the signatures serve.
    """
    task = get_task(task)
    limits = limits or ServingLimits()
    functions = dict(task.serving_functions(model))
    if task.takes_images:
        functions[BYTES_SIGNATURE_KEY] = functions["serving_default"]
    functions[PORTABLE_SIGNATURE_KEY] = functions[task.tflite_signature]
    if signatures is not None:
        unknown = sorted(set(signatures) - set(functions))
        if unknown:
            raise ValueError(
                f"A {task.name} model has signatures {sorted(functions)}; got {unknown}."
            )
        functions = {k: v for k, v in functions.items() if k in signatures}
    archive = tracking_archive(model)
    specs = task.input_signature(model, image_size)
    for name, serve in functions.items():
        serve = checked_inputs(serve, specs, minimum_image_size(model), limits)
        signature = specs
        if name == BYTES_SIGNATURE_KEY:
            channels = int(specs[0].shape[-1])
            serve = bytes_serving_fn(serve, task, channels, task.bytes_input_size(model), limits)
            signature = [BYTES_SIGNATURE]
        # TF Serving runs the fused kernels; the portable signature is for
        # converters (and so is everything traced inside tflite_builtins_only).
        trace = in_tflite if name == PORTABLE_SIGNATURE_KEY else in_tensorflow
        archive.add_endpoint(name, tf.function(trace(serve)), input_signature=signature)
    return archive


def tflite_archive(model, task=None, input_size=None, signature_key="serving_default", limits=None):
    """The `ExportArchive` that TFLite conversion traces: `task`'s serving
    signature `signature_key`, or (`task=None`) the model's own inputs and
    outputs under `signature_key`, with image height and width fixed to
    `input_size` if given. Trace it inside `tflite_builtins_only()`."""
    if task is not None:
        return serving_module(model, task, input_size, signatures=[signature_key], limits=limits)
    specs = []
    for tensor in keras.tree.flatten(model.inputs):
        shape = [None, *tensor.shape[1:]]
        if input_size is not None and len(shape) == 4:
            shape[1:3] = check_size(input_size, "input_size")
        specs.append(tf.TensorSpec(shape, tensor.dtype, name=tensor.name))
    # One argument: the single input, or the list of them (as the model takes).
    structure = [specs[0] if len(specs) == 1 else specs]
    archive = tracking_archive(model)
    archive.add_endpoint(
        signature_key,
        tf.function(lambda inputs: model(inputs, training=False)),
        input_signature=structure,
    )
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


def checked_inputs(serve, specs, min_size=1, limits=None):
    """`serve` behind a check of what a client sent against `specs`: each
    input a non-empty batch of the declared rank and fixed dimensions, all
    of one batch size, images of at least `min_size` pixels a side. A
    loaded signature does not enforce its declared shapes; without the
    check an empty batch, a 0x0 image or a 4-channel one failed deep in the
    network with a misleading message. The checks are `Assert`s in the
    SavedModel; the TFLite converter drops them, so the TFLite trace stays
    builtin-only. `limits` (a `ServingLimits`, default `ServingLimits()`)
    bound the `images`: height x width per image, batch x height x width
    per request, before the network runs."""
    limits = limits or ServingLimits()

    def checked(*inputs):
        checks, batch = [], None
        for spec, value in zip(specs, inputs):
            shape = tf.shape(value)
            rank = len(spec.shape)
            # Padded, so that a tensor of another rank is reported, not indexed.
            dims = tf.concat([shape, tf.zeros([rank], tf.int32)], axis=0)
            valid = (tf.size(shape) == rank) & (dims[0] > 0)
            for axis, size in enumerate(spec.shape[1:], start=1):
                if size is not None:
                    valid &= dims[axis] == size
            if batch is None:
                batch = dims[0]
            else:
                valid &= dims[0] == batch
            if spec.name == "images":
                valid &= (dims[1] >= min_size) & (dims[2] >= min_size)
                checks.append(_pixel_limits(dims, limits))
            checks.append(tf.debugging.Assert(valid, [_expected(spec, min_size), shape]))
        with tf.control_dependencies(checks):
            inputs = [tf.identity(value) for value in inputs]
        return serve(*inputs)

    return checked


def _pixel_limits(dims, limits):
    """An `Assert` that a batch of images of `dims` is within `limits`."""
    dims = tf.cast(dims, tf.int64)
    pixels = dims[1] * dims[2]
    return tf.debugging.Assert(
        (pixels <= limits.max_pixels) & (dims[0] * pixels <= limits.max_batch_pixels),
        [
            tf.strings.format(
                "images: a batch of {} images of {}x{} pixels is more than this model serves "
                "(max_pixels {} an image, max_batch_pixels {} a request, set at export)",
                (dims[0], dims[1], dims[2], limits.max_pixels, limits.max_batch_pixels),
            )
        ],
    )


def _expected(spec, min_size):
    """What a client must send for `spec`, as the start of an error message."""
    dims = ", ".join("?" if d is None else str(d) for d in spec.shape[1:])
    if spec.name != "images":
        return (
            f"{spec.name} must be a {spec.dtype.name} batch of shape (batch, {dims}), the "
            "batch non-empty and as the other inputs'; got shape"
        )
    channels = spec.shape[-1]
    kind = "RGB images" if channels == 3 else "images"
    return (
        f"images must be a non-empty batch (batch, height, width, {channels}) of {kind} "
        f"of at least {min_size}x{min_size} pixels; got shape"
    )


def export_saved_model(
    model, export_dir, name=None, version=1, task=None, labels=None, limits=None
):
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

    These signatures (and `serving_bytes`, the same from encoded images)
    call TensorFlow's fused kernels, which TF Serving runs fastest. One more,
    `"portable"`, is the task's TFLite signature (`serving_default`, a
    captioner's `tokens`) traced with builtin operators only, for the
    standard converters: `tf.lite.TFLiteConverter.from_saved_model(path,
    signature_keys=["portable"])` with `TFLITE_BUILTINS`, or `python -m
    tf2onnx.convert --saved-model path --signature_def portable`.

    Args:
        model: `keras.Model`. A model of this package.
        export_dir: str. The model base path TF Serving watches.
        name: str. Model name in the path. Defaults to `model.name`.
        version: int. Version folder; must not exist yet, so an export never
            overwrites one being served. Defaults to `1`.
        task: a `keras_segattn.tasks.Task`, its name or `None`. Which
            signatures to write: `"semantic"`, `"classification"`,
            `"captioning"`, `"instance"`, `"region_scoring"` (SDS's
            network) or `"box_segmentation"` (the hypercolumns network).
            Defaults to `None`: a registered model as its task serves it
            (`Task.serving_model`: a patch classifier as its dense
            labeller).
        labels: sequence of str or `None`. Written to
            `assets.extra/labels.txt`.
        limits: a `ServingLimits` or `None` (its defaults, `max_pixels`
            2048 x 2048 and `max_batch_pixels` twice that): the largest
            image and request the signatures serve, refused before anything
            is decoded or computed.

    Every image task also gets `serving_bytes`: the same outputs from a
    batch of encoded JPEG or PNG strings (`bytes_serving_fn`).

    A model trained with mixed precision is exported computing in float32
    (`core.precision.float32_model`), as every export of the package is.

    Returns:
        The path of the version folder.
    """
    path = version_path(export_dir, name or model.name, version)
    if task is None:  # a registered model, as its task serves it
        model, task = task_of(model).serving_model(model)
    staging = stage_saved_model(float32_model(model), path, task, labels, limits)
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


def stage_saved_model(model, path, task="semantic", labels=None, limits=None):
    """Writes the SavedModel of `path` (a version folder) to a hidden staging
    folder beside it, which TF Serving never loads (not a number), and
    returns the staging folder. Stale staging folders of the same version
    (a killed export: `export_checkpoint` holds the model's folder, so no
    other export is staging there) are removed first; a failed write
    removes its own."""
    parent, version = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    for stale in os.listdir(parent):
        if stale.startswith(f".staging-{version}-"):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    staging = os.path.join(parent, f".staging-{version}-{os.getpid()}")
    try:
        serving_module(model, task, limits=limits).write_out(staging, verbose=False)
        if labels is not None:
            write_labels(os.path.join(staging, LABELS_FILE), labels)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a full disk leaves no staging folder
        raise
    return staging


LABELS_FILE = os.path.join("assets.extra", "labels.txt")


def check_labels(labels):
    """`labels` as a list of str, refused unless non-empty single lines."""
    labels = [str(label) for label in labels]
    if not labels or any("\n" in label for label in labels):
        raise ValueError(
            f"labels must be a non-empty sequence of single lines; got {labels[:3]!r}."
        )
    return labels


def write_labels(path, labels):
    """Writes `labels` one per line (UTF-8), whole or not at all."""
    labels = check_labels(labels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text(path, "\n".join(labels) + "\n")


def read_labels(path):
    """The labels of a `labels.txt` (a SavedModel's `assets.extra/labels.txt`
    when `path` is a version folder), or `None` if there is none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, LABELS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def publish(staging, path):
    """Moves a fully written staging folder to its version folder in one
    rename: a reader sees no version folder, or a whole one."""
    if not os.path.isfile(os.path.join(staging, "saved_model.pb")):
        raise ValueError(f"{staging!r} holds no saved_model.pb; nothing to publish.")
    os.rename(staging, path)
    return path
