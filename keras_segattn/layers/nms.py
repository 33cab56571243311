"""Non-maximum suppression: greedy box NMS and window (Canny-style) NMS.

Both run in TFLite with builtin ops only. Box NMS calls TensorFlow's
`NonMaxSuppressionV4` kernel (TFLite's builtin `NON_MAX_SUPPRESSION_V4`,
XLA's sort-based NMS under `jit_compile`) once per image in a `tf.while_loop`
that carries fixed-shape buffers: `tf.map_fn` would carry a `TensorArray`,
whose TensorList ops TFLite cannot run, so the batch stays dynamic this way.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int, check_size


def _check_iou_threshold(iou_threshold):
    try:
        value = float(iou_threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(iou_threshold, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"iou_threshold must be a number in [0, 1]; got iou_threshold={iou_threshold!r}."
        )
    return value


def _check_score_threshold(score_threshold):
    if tf.is_tensor(score_threshold):  # computed in the graph (a data-dependent floor)
        return tf.cast(score_threshold, tf.float32)
    try:
        value = float(score_threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(score_threshold, bool) or np.isnan(value) or value == float("inf"):
        raise ValueError(
            "score_threshold must be a number below +inf (-inf keeps every box); got "
            f"score_threshold={score_threshold!r}."
        )
    return value


def _check_box_shapes(boxes_shape, scores_shape):
    boxes_shape, scores_shape = tuple(boxes_shape), tuple(scores_shape)
    if len(boxes_shape) != 3 or boxes_shape[-1] not in (4, None):
        raise ValueError(
            "boxes must be (batch, num_boxes, 4) in (x1, y1, x2, y2) order; got boxes with "
            f"shape {boxes_shape}."
        )
    if len(scores_shape) != 2:
        raise ValueError(
            f"scores must be (batch, num_boxes); got scores with shape {scores_shape}."
        )
    for axis in range(2):
        if None not in (boxes_shape[axis], scores_shape[axis]) and (
            boxes_shape[axis] != scores_shape[axis]
        ):
            raise ValueError(
                "boxes and scores must agree in batch size and number of boxes; got boxes "
                f"with shape {boxes_shape} and scores with shape {scores_shape}."
            )


def non_max_suppression(
    boxes, scores, max_output_size=100, iou_threshold=0.5, score_threshold=float("-inf")
):
    """Greedy non-maximum suppression of every image of a batch.

    Per image: drop boxes whose score is not above `score_threshold`, then
    repeatedly keep the highest-scoring remaining box (the lower index on a
    tie) and drop every remaining box whose IoU with it exceeds
    `iou_threshold`, until `max_output_size` boxes are kept. IoU is that of
    TensorFlow's kernels: the corners may come in either order, and a box of
    zero area overlaps nothing.

    Args:
        boxes: float tensor `(batch, num_boxes, 4)`, `(x1, y1, x2, y2)`.
        scores: float tensor `(batch, num_boxes)`.
        max_output_size: int. Boxes kept per image at most. Defaults to
            `100`.
        iou_threshold: float in `[0, 1]`. Defaults to `0.5`.
        score_threshold: float, or a scalar tensor. Defaults to `-inf` (keep
            every finite score).

    Returns:
        A tuple `(indices, selected_boxes, selected_scores, num_valid)`:
        `indices` int32 `(batch, max_output_size)`, the kept boxes' indices
        highest score first and `-1` after the first `num_valid`;
        `selected_boxes` `(batch, max_output_size, 4)` and `selected_scores`
        `(batch, max_output_size)`, those boxes and scores, zero-padded;
        `num_valid` int32 `(batch,)`, how many boxes each image kept.
    """
    max_output_size = check_int(max_output_size, "max_output_size")
    iou_threshold = _check_iou_threshold(iou_threshold)
    score_threshold = _check_score_threshold(score_threshold)
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    _check_box_shapes(boxes.shape, scores.shape)
    shape = tf.shape(boxes)
    batch, num_boxes = shape[0], shape[1]
    # The kernels take float32 (or half); IoU does not care whether boxes
    # are (x1, y1, x2, y2) or TensorFlow's (y1, x1, y2, x2).
    kernel_boxes = tf.cast(boxes, tf.float32)
    kernel_scores = tf.cast(scores, tf.float32)

    def body(i, indices, counts):
        selected, count = tf.raw_ops.NonMaxSuppressionV4(
            boxes=kernel_boxes[i],
            scores=kernel_scores[i],
            max_output_size=max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            pad_to_max_output_size=True,
        )
        # Row i's indicator: a comparison (one_hot in a loop is an ONNX
        # OneHot that onnxruntime refuses).
        row = tf.cast(tf.equal(tf.range(batch), i), tf.int32)
        new_indices = indices + row[:, None] * selected[None, :]
        new_counts = counts + row * count
        # The dynamic range loses a static batch size, which the loop
        # variables must keep.
        new_indices.set_shape(indices.shape)
        new_counts.set_shape(counts.shape)
        return i + 1, new_indices, new_counts

    _, indices, num_valid = tf.while_loop(
        lambda i, *_: i < batch,
        body,
        (
            tf.constant(0),
            tf.zeros([batch, max_output_size], tf.int32),
            tf.zeros([batch], tf.int32),
        ),
    )
    valid = tf.range(max_output_size)[None, :] < num_valid[:, None]
    # Padding points at an appended all-zero box: the gathers then need no
    # mask, and an image with no boxes at all still has something to read.
    slot = tf.where(valid, indices, num_boxes)
    flat_slot = tf.range(batch)[:, None] * (num_boxes + 1) + slot
    padded_boxes = tf.concat([boxes, tf.zeros([batch, 1, 4], boxes.dtype)], axis=1)
    padded_scores = tf.concat([scores, tf.zeros([batch, 1], scores.dtype)], axis=1)
    selected_boxes = tf.gather(tf.reshape(padded_boxes, [-1, 4]), flat_slot)
    selected_scores = tf.gather(tf.reshape(padded_scores, [-1]), flat_slot)
    indices = tf.where(valid, indices, -tf.ones_like(indices))
    return indices, selected_boxes, selected_scores, num_valid


@keras.saving.register_keras_serializable(package="keras_segattn")
class NonMaxSuppression(keras.layers.Layer):
    """Greedy non-maximum suppression of a batch of scored boxes.

    The last step of a proposal or detection head (SDS and MNC keep the
    top-scoring regions this way): per image, keeps the highest-scoring box,
    drops the boxes overlapping it by more than `iou_threshold` IoU, and
    repeats; see `non_max_suppression` for the exact rule. Outputs have a
    fixed size, `max_output_size` per image, padded.

    Runs in TFLite with builtin ops only (`NON_MAX_SUPPRESSION_V4` in a
    `WHILE` over the images), with a dynamic batch and number of boxes, and
    under `jit_compile`. Not differentiable with respect to the selection;
    gradients reach the selected boxes and scores.

    Args:
        max_output_size: int. Boxes kept per image at most. Defaults to
            `100`.
        iou_threshold: float in `[0, 1]`. A box is dropped when its IoU with
            a kept box is above this. Defaults to `0.5`.
        score_threshold: float. Only boxes scoring above this are
            candidates. Defaults to `-inf`.

    Call arguments:
        inputs: a list `[boxes, scores]`: `boxes` `(batch, num_boxes, 4)` as
            `(x1, y1, x2, y2)`, `scores` `(batch, num_boxes)`.

    Returns:
        A tuple `(indices, selected_boxes, selected_scores, num_valid)`:
        int32 `(batch, max_output_size)` indices into `num_boxes`, highest
        score first, `-1` as padding; the selected `(batch, max_output_size,
        4)` boxes and `(batch, max_output_size)` scores, zero-padded; int32
        `(batch,)` count of valid entries.

    Examples:
        >>> boxes = np.array([[[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]], "float32")
        >>> scores = np.array([[0.9, 0.8, 0.7]], "float32")
        >>> indices, _, _, num_valid = NonMaxSuppression(max_output_size=3)([boxes, scores])
        >>> indices.numpy().tolist(), num_valid.numpy().tolist()
        ([[0, 2, -1]], [2])
    """

    def __init__(
        self, max_output_size=100, iou_threshold=0.5, score_threshold=float("-inf"), **kwargs
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.max_output_size = check_int(max_output_size, "max_output_size")
        self.iou_threshold = _check_iou_threshold(iou_threshold)
        self.score_threshold = _check_score_threshold(score_threshold)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                f"NonMaxSuppression expects inputs [boxes, scores]; got input shape {input_shape}."
            )
        _check_box_shapes(input_shape[0], input_shape[1])

    def call(self, inputs):
        boxes, scores = inputs
        return non_max_suppression(
            boxes, scores, self.max_output_size, self.iou_threshold, self.score_threshold
        )

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        size = self.max_output_size
        return ((batch, size), (batch, size, 4), (batch, size), (batch,))

    def compute_output_spec(self, inputs):
        boxes, scores = inputs
        shapes = self.compute_output_shape((boxes.shape, scores.shape))
        dtypes = ("int32", boxes.dtype, scores.dtype, "int32")
        return tuple(keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_output_size": self.max_output_size,
                "iou_threshold": self.iou_threshold,
                "score_threshold": self.score_threshold,
            }
        )
        return config


def window_nms(values, window=3):
    """Keeps each value that is the maximum of its window, zeros the rest.

    The non-maximum suppression of Canny's edge thinning and of heatmap peak
    picking: `values[i, j]` survives when no value in the `window` centred
    on it is larger (ties all survive). The window is clipped at the border
    (`"same"` max pooling, which ignores the padding); for an even size it
    reaches one cell further down or right than up or left. Builtin TFLite
    ops only (`MAX_POOL_2D`, `EQUAL`, `SELECT`).

    Args:
        values: tensor `(batch, height, width, channels)`.
        window: int or tuple `(height, width)`. Defaults to `3`. A `(3, 1)`
            window compares each value with its vertical neighbours only,
            as Canny does across a horizontal edge.

    Returns:
        A tensor like `values`.

    Examples:
        >>> row = np.array([1, 3, 2, 2, 5, 4], "float32").reshape(1, 1, 6, 1)
        >>> window_nms(row, window=3).numpy().ravel().tolist()
        [0.0, 3.0, 0.0, 0.0, 5.0, 0.0]
    """
    window = check_size(window, "window")
    values = tf.convert_to_tensor(values)
    if values.shape.rank != 4:
        raise ValueError(
            "values must be 4-D (batch, height, width, channels); got values with shape "
            f"{tuple(values.shape)}."
        )
    pooled = tf.nn.max_pool2d(values, window, strides=1, padding="SAME")
    return tf.where(tf.equal(values, pooled), values, tf.zeros_like(values))


@keras.saving.register_keras_serializable(package="keras_segattn")
class WindowNonMaxSuppression(keras.layers.Layer):
    """Keeps the values that are the maximum of their window, zeros the rest.

    Layer form of `window_nms` (Canny-style non-maximum suppression, as used
    to thin edge and boundary maps and to pick heatmap peaks). Builtin TFLite
    ops only.

    Args:
        window: int or tuple `(height, width)`. Defaults to `3`.

    Call arguments:
        values: a `(batch, height, width, channels)` tensor.

    Returns:
        A tensor like `values`.
    """

    def __init__(self, window=3, **kwargs):
        super().__init__(**kwargs)
        self.window = check_size(window, "window")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "WindowNonMaxSuppression expects 4-D values (batch, height, width, channels); "
                f"got input shape {tuple(input_shape)}."
            )

    def call(self, values):
        return window_nms(values, self.window)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"window": self.window})
        return config
