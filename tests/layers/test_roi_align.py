import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import RoIAlign, roi_align, roi_max_pool
from keras_segattn.layers.roi_align import crop_and_resize
from keras_segattn.testing import run_layer_test, run_model_test
from tests.references import (
    crop_and_resize_image_gradient_reference,
    roi_align_reference,
    roi_max_pool_reference,
)


def make_boxes(rng, batch, height, width, spatial_scale, num_random=6):
    """Random boxes plus boxes on, across and beyond the border, in pixels."""
    h, w = height / spatial_scale, width / spatial_scale
    xy = rng.uniform(-0.3, 1.1, size=(batch, num_random, 2)) * [w, h]
    size = rng.uniform(0.0, 0.8, size=(batch, num_random, 2)) * [w, h]
    random = np.concatenate([xy, xy + size], axis=-1)
    fixed = np.array(
        [
            [0.0, 0.0, w, h],  # the whole map, touching every border
            [0.0, 0.1 * h, 0.3 * w, 0.6 * h],  # touching the left border
            [0.7 * w, 0.5 * h, w, h],  # touching the bottom-right corner
            [-0.4 * w, 0.2 * h, 0.3 * w, 1.3 * h],  # crossing two borders
            [-0.3 / spatial_scale, 0.2 * h, 0.4 * w, 0.5 * h],  # samples in [-1, 0)
            [1.2 * w, 0.1 * h, 1.5 * w, 0.4 * h],  # fully outside, right
            [-0.9 * w, -0.8 * h, -0.2 * w, -0.3 * h],  # fully outside, top-left
            [0.4 * w, 0.4 * h, 0.4 * w, 0.7 * h],  # zero width
        ]
    )
    fixed = np.broadcast_to(fixed, (batch, *fixed.shape))
    return np.concatenate([random, fixed], axis=1).astype("float32")


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize(
    "sampling_ratio, spatial_scale, output_size",
    [(1, 1.0, (3, 4)), (2, 0.5, (2, 2)), (3, 0.25, (4, 3)), (2, 1 / 16, (5, 5))],
)
def test_align_matches_detectron2_reference(
    rng, aligned, sampling_ratio, spatial_scale, output_size
):
    features = rng.normal(size=(3, 7, 9, 2)).astype("float32")
    boxes = make_boxes(rng, 3, 7, 9, spatial_scale)
    out = roi_align(features, boxes, output_size, sampling_ratio, spatial_scale, aligned)
    expected = roi_align_reference(
        features, boxes, output_size, sampling_ratio, spatial_scale, aligned
    )
    assert out.shape == (3, 14, *output_size, 2)
    # The test covers what it claims: zeros off the map, values on it.
    assert np.all(expected[:, 11:13] == 0)
    assert np.all(expected[:, 6:9] != 0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_align_hand_worked_example():
    # aligned=True: the 4-cell box starts at -0.5, bins are 2 cells wide and
    # their 2 samples fall on cell centres 0, 1 (first bin) and 2, 3.
    features = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    boxes = np.array([[[0.0, 0.0, 4.0, 4.0]]], "float32")
    out = roi_align(features, boxes, output_size=2, spatial_scale=1.0)
    np.testing.assert_array_equal(out[0, 0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    # aligned=False, 1 sample: the bin centres 1 and 3 are cell indices
    # without the half-cell shift, so each bin reads one cell exactly.
    out = roi_align(features, boxes, 2, sampling_ratio=1, spatial_scale=1.0, aligned=False)
    np.testing.assert_array_equal(out[0, 0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])


def test_align_degenerate_boxes(rng):
    features = rng.normal(size=(1, 6, 8, 2)).astype("float32")
    reversed_boxes = np.array([[[40.0, 30.0, 10.0, 20.0], [5.0, 50.0, 60.0, 10.0]]], "float32")
    # aligned=False: Detectron2 raises the size to 1 cell; the reference does too.
    np.testing.assert_allclose(
        roi_align(features, reversed_boxes, 3, 2, 1 / 8, aligned=False),
        roi_align_reference(features, reversed_boxes, (3, 3), 2, 1 / 8, aligned=False),
        atol=1e-5,
    )
    # aligned=True: Detectron2 asserts; here x2 < x1 is the zero-size box at x1.
    with pytest.raises(ValueError, match="non-negative size"):
        roi_align_reference(features, reversed_boxes, (3, 3), 2, 1 / 8, aligned=True)
    collapsed = reversed_boxes.copy()
    collapsed[..., 2:] = np.maximum(collapsed[..., 2:], collapsed[..., :2])
    np.testing.assert_allclose(
        roi_align(features, reversed_boxes, 3, 2, 1 / 8),
        roi_align_reference(features, collapsed, (3, 3), 2, 1 / 8),
        atol=1e-5,
    )


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
def test_max_pool_matches_reference(rng, spatial_scale):
    features = rng.normal(size=(2, 7, 9, 3)).astype("float32")
    boxes = make_boxes(rng, 2, 7, 9, spatial_scale)
    # Multiples of half a cell: rounding of exact halves (away from zero).
    halves = rng.integers(-4, 20, size=(2, 5, 4)) * 0.5 / spatial_scale
    reversed_box = np.array([[[6.0, 5.0, 2.0, 1.0]]]) / spatial_scale
    boxes = np.concatenate([boxes, halves, np.repeat(reversed_box, 2, 0)], axis=1)
    boxes = boxes.astype("float32")
    for output_size in ((2, 3), (4, 4), (7, 7)):
        out = roi_max_pool(features, boxes, output_size, spatial_scale)
        expected = roi_max_pool_reference(features, boxes, output_size, spatial_scale)
        np.testing.assert_array_equal(out, expected)
    # Boxes off the map pool nothing.
    assert np.all(expected[:, 11:13] == 0)


def test_max_pool_hand_worked_example():
    features = np.arange(20, dtype="float32").reshape(1, 4, 5, 1)
    # Cells x 1..4, y 0..2: 4 columns in 2 bins, 3 rows in 2 bins (the middle
    # row is in both). Half a cell rounds away from zero: 0.5 -> 1.
    boxes = np.array([[[0.5, 0.0, 4.0, 2.0], [9.0, 9.0, 12.0, 12.0]]], "float32")
    out = roi_max_pool(features, boxes, output_size=2, spatial_scale=1.0)
    np.testing.assert_array_equal(out[0, 0, :, :, 0], [[7.0, 9.0], [12.0, 14.0]])
    np.testing.assert_array_equal(out[0, 1], np.zeros((2, 2, 1)))


@pytest.mark.parametrize("mode", ["align", "max_pool"])
def test_gradients_match_finite_differences(rng, mode):
    features = rng.normal(size=(2, 4, 5, 2))
    boxes = np.array(
        [
            [[3.3, 2.1, 13.7, 11.2], [-4.2, 5.5, 9.1, 17.3]],
            [[6.6, 0.4, 19.5, 8.8], [1.0, 1.0, 5.2, 3.1]],
        ]
    )
    weights = rng.normal(size=(2, 2, 3, 2, 2))

    def loss(features, boxes):
        layer = RoIAlign(output_size=(3, 2), spatial_scale=0.25, mode=mode, dtype="float64")
        return tf.reduce_sum(layer([features, boxes]) * weights)

    features_t, boxes_t = tf.constant(features), tf.constant(boxes)
    with tf.GradientTape() as tape:
        tape.watch([features_t, boxes_t])
        value = loss(features_t, boxes_t)
    grad_features, grad_boxes = tape.gradient(value, [features_t, boxes_t])

    def numeric(array, wrt_features):
        eps = 1e-6
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            args = (lambda a: (a, boxes)) if wrt_features else (lambda a: (features, a))
            grad[index] = (float(loss(*args(plus))) - float(loss(*args(minus)))) / (2 * eps)
        return grad

    assert np.any(np.asarray(grad_features) != 0)
    np.testing.assert_allclose(grad_features, numeric(features, True), atol=1e-6)
    if mode == "align":
        # The bilinear weights also carry a gradient to the box coordinates.
        assert np.any(np.asarray(grad_boxes) != 0)
        np.testing.assert_allclose(grad_boxes, numeric(boxes, False), atol=1e-6)


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"output_size": (3, 2), "sampling_ratio": 2, "spatial_scale": 0.5},
        {"output_size": 3, "spatial_scale": 0.5, "aligned": False, "sampling_ratio": 1},
        {"output_size": (2, 3), "spatial_scale": 0.5, "mode": "max_pool"},
    ],
)
def test_layer_passes_shared_checks(rng, init_kwargs):
    features = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    boxes = make_boxes(rng, 2, 5, 6, 0.5, num_random=2)
    out_size = RoIAlign(**init_kwargs).output_size
    run_layer_test(
        RoIAlign,
        init_kwargs,
        [features, boxes],
        expected_output_shape=(2, 10, *out_size, 3),
    )


@pytest.mark.parametrize("mode", ["align", "max_pool"])
def test_two_input_model_with_dynamic_boxes_runs_in_tflite(rng, mode):
    # Dynamic batch and number of boxes; a convolution in front checks that
    # gradients reach weights through the layer.
    features_in = keras.Input((6, 7, 2), name="features")
    boxes_in = keras.Input((None, 4), name="boxes")
    x = keras.layers.Conv2D(3, 3, padding="same")(features_in)
    pooled = RoIAlign(output_size=(3, 3), spatial_scale=0.5, mode=mode)([x, boxes_in])
    model = keras.Model([features_in, boxes_in], pooled)
    features = rng.normal(size=(3, 6, 7, 2)).astype("float32")
    boxes = make_boxes(rng, 3, 6, 7, 0.5, num_random=3)
    out = run_model_test(model, [features, boxes])
    assert tuple(out.shape) == (3, 11, 3, 3, 3)
    # Another number of boxes through the same model.
    assert tuple(model([features, boxes[:, :4]]).shape) == (3, 4, 3, 3, 3)


def test_class_specific_pooling_reads_only_each_boxs_group(rng):
    # 3 groups of 2 channels; group ids -1 and 3 are out of range and read 0.
    features = rng.normal(size=(2, 7, 9, 6)).astype("float32")
    boxes = make_boxes(rng, 2, 7, 9, 0.5, num_random=4)
    groups = rng.integers(-1, 4, size=boxes.shape[:2]).astype("int32")
    groups[:, :5] = [0, 1, 2, -1, 3]
    out = roi_align(features, boxes, (3, 4), 2, 0.5, groups=groups, num_groups=3)
    every = roi_align_reference(features, boxes, (3, 4), 2, 0.5).reshape(2, 12, 3, 4, 3, 2)
    valid = (groups >= 0) & (groups < 3)
    expected = np.take_along_axis(every, np.clip(groups, 0, 2)[..., None, None, None, None], 4)
    expected = expected[..., 0, :] * valid[..., None, None, None]
    assert out.shape == (2, 12, 3, 4, 2)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_class_specific_layer_passes_shared_checks_and_tflite(rng):
    features = rng.normal(size=(2, 5, 6, 6)).astype("float32")
    boxes = make_boxes(rng, 2, 5, 6, 0.5, num_random=2)
    groups = rng.integers(0, 3, size=boxes.shape[:2]).astype("int32")
    init_kwargs = {"output_size": (3, 2), "spatial_scale": 0.5, "num_groups": 3}
    out = run_layer_test(
        RoIAlign, init_kwargs, [features, boxes, groups], expected_output_shape=(2, 10, 3, 2, 2)
    )
    every = np.asarray(RoIAlign((3, 2), spatial_scale=0.5)([features, boxes]))
    every = every.reshape(2, 10, 3, 2, 3, 2)
    expected = np.take_along_axis(every, groups[..., None, None, None, None], 4)[..., 0, :]
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["align", "max_pool"])
def test_no_boxes(rng, mode):
    features = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    out = RoIAlign(output_size=2, mode=mode)([features, np.zeros((2, 0, 4), "float32")])
    assert tuple(out.shape) == (2, 0, 2, 2, 3)


def test_float16_policy_keeps_box_coordinates_exact(rng):
    # Pixel coordinates in the thousands move by up to half a pixel in
    # float16 (1017.7 -> 1017.5, 1080.9 -> 1081): boxes inside a map large
    # enough that every sample reads its own cells.
    features = rng.normal(size=(1, 160, 160, 2)).astype("float32")
    boxes = np.array(
        [[[1001.3, 1017.7, 1080.9, 1100.2], [17.3, 1130.6, 1270.1, 1263.4]]], "float32"
    )
    expected = roi_align_reference(features, boxes, (2, 2), 2, 1 / 8)
    atol = 4e-3  # float16 outputs of values near 1
    rounded = roi_align_reference(
        features, boxes.astype("float16").astype("float32"), (2, 2), 2, 1 / 8
    )
    assert np.max(np.abs(rounded - expected)) > 10 * atol  # float16 boxes would fail this test
    out = RoIAlign(output_size=2, spatial_scale=1 / 8, dtype="mixed_float16")([features, boxes])
    assert out.dtype == "float16"
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, atol=atol)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="output_size=0"):
        RoIAlign(output_size=0)
    with pytest.raises(ValueError, match=r"output_size=\(7, 2.5\)"):
        RoIAlign(output_size=(7, 2.5))
    with pytest.raises(ValueError, match="output_size='7'"):
        RoIAlign(output_size="7")
    with pytest.raises(ValueError, match="sampling_ratio=0"):
        RoIAlign(sampling_ratio=0)
    with pytest.raises(ValueError, match="sampling_ratio=1.5"):
        RoIAlign(sampling_ratio=1.5)
    with pytest.raises(ValueError, match="spatial_scale=0"):
        RoIAlign(spatial_scale=0)
    with pytest.raises(ValueError, match="spatial_scale=nan"):
        RoIAlign(spatial_scale=float("nan"))
    with pytest.raises(ValueError, match="mode='avg'"):
        RoIAlign(mode="avg")
    with pytest.raises(ValueError, match="aligned='yes'"):
        RoIAlign(aligned="yes")
    features = np.zeros((2, 5, 6, 3), "float32")
    with pytest.raises(ValueError, match=r"boxes .* got boxes with shape \(2, 4\)"):
        RoIAlign()([features, np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"boxes .* got boxes with shape \(2, 3, 5\)"):
        RoIAlign()([features, np.zeros((2, 3, 5), "float32")])
    with pytest.raises(ValueError, match=r"features must be 4-D.*\(5, 6, 3\)"):
        roi_align(np.zeros((5, 6, 3), "float32"), np.zeros((1, 3, 4), "float32"))
    with pytest.raises(ValueError, match="same batch size"):
        roi_max_pool(features, np.zeros((3, 1, 4), "float32"))
    with pytest.raises(ValueError, match="expects inputs \\[features, boxes\\]"):
        RoIAlign()(features)
    with pytest.raises(ValueError, match="num_groups=0"):
        RoIAlign(num_groups=0)
    with pytest.raises(ValueError, match="needs mode='align'"):
        RoIAlign(num_groups=2, mode="max_pool")
    with pytest.raises(ValueError, match="multiple of num_groups=2.*got 3 channels"):
        RoIAlign(num_groups=2)([features, np.zeros((2, 1, 4), "float32"), np.zeros((2, 1))])
    with pytest.raises(ValueError, match="expects inputs \\[features, boxes, groups\\]"):
        RoIAlign(num_groups=3)([features, np.zeros((2, 1, 4), "float32")])
    with pytest.raises(ValueError, match=r"groups must be \(batch, num_boxes\)"):
        RoIAlign(num_groups=3)([features, np.zeros((2, 1, 4), "float32"), np.zeros((2,))])
    with pytest.raises(ValueError, match="groups and num_groups go together"):
        roi_align(features, np.zeros((2, 1, 4), "float32"), num_groups=3)
    with pytest.raises(ValueError, match="must be static"):
        RoIAlign(mode="max_pool")([keras.Input((None, None, 3)), keras.Input((None, 4))])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_box_reads_nothing_and_poisons_no_gradient(rng, bad):
    features = tf.constant(rng.normal(size=(1, 8, 8, 3)).astype("float32"))
    boxes = np.array([[[1.0, 1.0, 6.0, 5.0], [0.0, bad, 4.0, 4.0]]], "float32")
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = roi_align(features, boxes, (2, 2), spatial_scale=1.0)
        loss = tf.reduce_sum(pooled[:, 0])  # the loss reads only the good box
    gradient = tape.gradient(loss, features).numpy()
    assert np.all(np.isfinite(pooled.numpy())) and np.all(pooled.numpy()[0, 1] == 0)
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    good = roi_align(features, boxes[:, :1], (2, 2), spatial_scale=1.0)
    np.testing.assert_array_equal(pooled.numpy()[:, :1], good.numpy())


@pytest.mark.parametrize("crop_size", [(4, 3), (1, 1), (1, 5)])
def test_crop_and_resize_gradient_matches_tensorflow_and_reference(rng, crop_size):
    """RoIAlign's fused path computes its gradient to the map itself (in a
    fixed order); it equals TensorFlow's (run single-threaded here, where it
    does not race) and the kernel's definition, samples outside included."""
    image = tf.constant(rng.normal(size=(2, 7, 9, 3)), tf.float32)
    corners = rng.uniform(-0.3, 1.3, size=(40, 2, 2))  # many outside, some flipped
    boxes = tf.constant(corners.reshape(40, 4)[:, [0, 1, 2, 3]], tf.float32)
    indices = tf.constant(rng.integers(0, 2, 40), tf.int32)
    upstream = tf.constant(rng.normal(size=(40, *crop_size, 3)), tf.float32)
    gradients = []
    for crop in (crop_and_resize, tf.image.crop_and_resize):
        with tf.GradientTape() as tape:
            tape.watch([image, boxes])
            crops = crop(image, boxes, indices, crop_size)
            loss = tf.reduce_sum(crops * upstream)
        gradients.append((crops, *tape.gradient(loss, [image, boxes])))
    (ours, to_image, to_boxes), (theirs, tf_to_image, tf_to_boxes) = gradients
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(to_boxes, tf_to_boxes)
    np.testing.assert_allclose(to_image, tf_to_image, rtol=1e-5, atol=1e-5)
    reference = crop_and_resize_image_gradient_reference(upstream, image.shape, boxes, indices)
    np.testing.assert_allclose(to_image, reference, rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(reference) > 0.5 * reference.size  # the boxes cover most pixels


def test_a_full_integer_tflite_file_keeps_the_box_arithmetic_in_float(rng, tmp_path):
    # In an int8 file the finiteness test (|x| <= the largest float) gave the
    # boxes a scale no coordinate survived, and the bilinear weights shared
    # one with the pixel positions: every box read zeros. The box arithmetic
    # and the taps stay in float; the gather and the weighted sums are int8.
    from keras_segattn.core.kernels import tflite_builtins_only
    from keras_segattn.export import convert_to_tflite
    from keras_segattn.export.tflite import run_tflite

    module = tf.Module()
    module.pool = tf.function(
        lambda features, boxes: {"pooled": roi_align(features, boxes, 4, 2, 1 / 8)},
        input_signature=[
            tf.TensorSpec((1, 8, 8, 3), tf.float32, name="features"),
            tf.TensorSpec((1, 5, 4), tf.float32, name="boxes"),
        ],
    )
    path = str(tmp_path / "pool")
    with tflite_builtins_only():
        tf.saved_model.save(module, path, signatures=module.pool.get_concrete_function())

    def example():
        corner = rng.uniform(0, 40, size=(1, 5, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(8, 24, size=(1, 5, 2))], -1)
        features = rng.uniform(0, 4, size=(1, 8, 8, 3))
        return {"features": features.astype(np.float32), "boxes": boxes.astype(np.float32)}

    calibration = [example() for _ in range(16)]
    flatbuffer = convert_to_tflite(path, quantization="int8", representative_images=calibration)
    inputs = example()
    outputs = run_tflite(flatbuffer, inputs)["pooled"]
    expected = roi_align_reference(inputs["features"], inputs["boxes"], (4, 4), 2, 1 / 8)
    np.testing.assert_allclose(outputs, expected, atol=0.1)  # int8 features: 4 / 256 a step
