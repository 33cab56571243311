import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import (
    NonMaxSuppression,
    WindowNonMaxSuppression,
    non_max_suppression,
    window_nms,
)
from keras_segattn.testing import run_layer_test, run_model_test
from tests.references import greedy_nms_reference


def random_boxes(rng, batch, num_boxes, extent=20.0):
    """Clustered boxes, so that many overlap; distinct random scores."""
    centres = rng.uniform(0, extent, size=(batch, 3, 2))
    centre = centres[np.arange(batch)[:, None], rng.integers(0, 3, size=(batch, num_boxes))]
    centre = centre + rng.normal(scale=2.0, size=(batch, num_boxes, 2))
    size = rng.uniform(2.0, 8.0, size=(batch, num_boxes, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    scores = rng.uniform(size=(batch, num_boxes))
    return boxes.astype("float32"), scores.astype("float32")


def check_against_reference(outputs, boxes, scores, max_output_size, iou, score_threshold):
    indices, selected_boxes, selected_scores, num_valid = (np.asarray(o) for o in outputs)
    assert indices.dtype == np.int32 and num_valid.dtype == np.int32
    for b in range(len(boxes)):
        keep = greedy_nms_reference(boxes[b], scores[b], max_output_size, iou, score_threshold)
        n = len(keep)
        assert num_valid[b] == n
        np.testing.assert_array_equal(indices[b, :n], keep)
        np.testing.assert_array_equal(indices[b, n:], -1)
        np.testing.assert_array_equal(selected_boxes[b, :n], boxes[b, keep])
        np.testing.assert_array_equal(selected_boxes[b, n:], 0)
        np.testing.assert_array_equal(selected_scores[b, :n], scores[b, keep])
        np.testing.assert_array_equal(selected_scores[b, n:], 0)


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("max_output_size", [1, 5, 40])
def test_matches_greedy_reference(rng, iou_threshold, max_output_size):
    boxes, scores = random_boxes(rng, 4, 30)
    outputs = non_max_suppression(boxes, scores, max_output_size, iou_threshold)
    check_against_reference(outputs, boxes, scores, max_output_size, iou_threshold, -np.inf)
    # The clusters make suppression, not the cap, end the selection here.
    if max_output_size == 40 and iou_threshold <= 0.5:
        assert np.all(np.asarray(outputs[3]) < 30)


def test_score_threshold(rng):
    boxes, scores = random_boxes(rng, 3, 25)
    layer = NonMaxSuppression(max_output_size=10, iou_threshold=0.6, score_threshold=0.55)
    outputs = layer([boxes, scores])
    check_against_reference(outputs, boxes, scores, 10, 0.6, 0.55)
    kept_scores = np.asarray(outputs[2])
    assert np.all(kept_scores[kept_scores != 0] > 0.55)


def test_all_suppressed_or_below_threshold(rng):
    # Identical boxes: only the best survives.
    boxes = np.tile(np.array([2.0, 3.0, 9.0, 7.0], "float32"), (2, 6, 1))
    scores = rng.uniform(size=(2, 6)).astype("float32")
    indices, selected_boxes, selected_scores, num_valid = NonMaxSuppression(4)([boxes, scores])
    np.testing.assert_array_equal(num_valid, [1, 1])
    np.testing.assert_array_equal(np.asarray(indices)[:, 0], np.argmax(scores, axis=1))
    np.testing.assert_array_equal(np.asarray(indices)[:, 1:], -1)
    np.testing.assert_array_equal(np.asarray(selected_scores)[:, 0], scores.max(axis=1))
    # No score above the threshold: nothing at all.
    outputs = NonMaxSuppression(4, score_threshold=1.0)([boxes, scores])
    np.testing.assert_array_equal(outputs[3], [0, 0])
    np.testing.assert_array_equal(outputs[0], -np.ones((2, 4)))
    np.testing.assert_array_equal(outputs[1], np.zeros((2, 4, 4)))
    np.testing.assert_array_equal(outputs[2], np.zeros((2, 4)))


def test_fewer_boxes_than_max_output_size_and_batch_varies(rng):
    boxes = np.array(
        [
            [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]],  # 2 survive
            [[0, 0, 4, 4], [5, 5, 9, 9], [10, 10, 14, 14]],  # all 3 survive
        ],
        "float32",
    )
    scores = np.array([[0.9, 0.8, 0.7], [0.1, 0.3, 0.2]], "float32")
    indices, selected_boxes, selected_scores, num_valid = NonMaxSuppression(6)([boxes, scores])
    np.testing.assert_array_equal(num_valid, [2, 3])
    np.testing.assert_array_equal(indices, [[0, 2, -1, -1, -1, -1], [1, 2, 0, -1, -1, -1]])
    np.testing.assert_array_equal(selected_boxes[1, :3], boxes[1, [1, 2, 0]])
    np.testing.assert_array_equal(
        selected_scores[0], scores[0, [0, 2, 0, 0, 0, 0]] * [1, 1, 0, 0, 0, 0]
    )


def test_reversed_corners_and_degenerate_boxes():
    # Corners in either order give the same box; a zero-area box overlaps
    # nothing, so it is never suppressed and suppresses nothing.
    boxes = np.array([[[0, 0, 10, 10], [10, 10, 0, 1], [5, 5, 5, 9], [5, 5, 5, 9]]], "float32")
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], "float32")
    outputs = non_max_suppression(boxes, scores, 4, 0.5)
    check_against_reference(outputs, boxes, scores, 4, 0.5, -np.inf)
    np.testing.assert_array_equal(outputs[0], [[0, 2, 3, -1]])


def test_no_boxes():
    outputs = NonMaxSuppression(3)([np.zeros((2, 0, 4), "float32"), np.zeros((2, 0), "float32")])
    np.testing.assert_array_equal(outputs[0], -np.ones((2, 3)))
    np.testing.assert_array_equal(outputs[1], np.zeros((2, 3, 4)))
    np.testing.assert_array_equal(outputs[3], [0, 0])


def test_model_with_dynamic_batch_and_boxes_runs_in_tflite(rng):
    boxes_in = keras.Input((None, 4), name="boxes")
    scores_in = keras.Input((None,), name="scores")
    outputs = NonMaxSuppression(max_output_size=8, iou_threshold=0.4)([boxes_in, scores_in])
    model = keras.Model([boxes_in, scores_in], outputs)
    boxes, scores = random_boxes(rng, 3, 20)
    # Image 0: one box, jittered, so suppression ends it before the cap.
    boxes[0] = [4.0, 4.0, 12.0, 10.0] + rng.normal(scale=0.5, size=(20, 4))
    # Exact parity (integer outputs compare exactly) with builtin TFLite,
    # batch 3, plus the jit fit step through the selected boxes and scores.
    expected = run_model_test(model, [boxes, scores])
    check_against_reference(expected, boxes, scores, 8, 0.4, -np.inf)
    assert np.asarray(expected[3])[0] < 8 and np.any(np.asarray(expected[3])[1:] == 8)


def test_layer_passes_shared_checks_with_score_threshold(rng):
    boxes, scores = random_boxes(rng, 2, 12)
    outputs = run_layer_test(
        NonMaxSuppression,
        {"max_output_size": 5, "iou_threshold": 0.5, "score_threshold": 0.3},
        [boxes, scores],
        expected_output_shape=[(2, 5), (2, 5, 4), (2, 5), (2,)],
    )
    check_against_reference(outputs, boxes, scores, 5, 0.5, 0.3)


def test_symbolic_output_dtypes():
    outputs = NonMaxSuppression(7)([keras.Input((None, 4)), keras.Input((None,))])
    assert [o.dtype for o in outputs] == ["int32", "float32", "float32", "int32"]
    assert [tuple(o.shape) for o in outputs] == [(None, 7), (None, 7, 4), (None, 7), (None,)]


def test_nms_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="max_output_size=0"):
        NonMaxSuppression(max_output_size=0)
    with pytest.raises(ValueError, match="max_output_size=2.5"):
        NonMaxSuppression(max_output_size=2.5)
    with pytest.raises(ValueError, match="iou_threshold=1.5"):
        NonMaxSuppression(iou_threshold=1.5)
    with pytest.raises(ValueError, match="score_threshold=inf"):
        NonMaxSuppression(score_threshold=float("inf"))
    with pytest.raises(ValueError, match=r"boxes .* got boxes with shape \(2, 5, 5\)"):
        NonMaxSuppression()([np.zeros((2, 5, 5), "float32"), np.zeros((2, 5), "float32")])
    with pytest.raises(ValueError, match=r"scores must be \(batch, num_boxes\)"):
        non_max_suppression(np.zeros((2, 5, 4)), np.zeros((2, 5, 1)))
    with pytest.raises(ValueError, match="must agree"):
        non_max_suppression(np.zeros((2, 5, 4)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="expects inputs \\[boxes, scores\\]"):
        NonMaxSuppression()(np.zeros((2, 5, 4), "float32"))


# The lecture slide on SDS's region refinement ("Non-maximum suppression
# (NMS)", the Canny edge-thinning example), /work/shared/seed: this grid and
# the result below it.
SLIDE_GRID = [
    [2, 3, 5, 4, 6],
    [4, 5, 7, 7, 7],
    [6, 6, 4, 3, 2],
    [3, 4, 3, 1, 1],
]
SLIDE_RESULT = [
    [0, 0, 0, 0, 0],
    [0, 0, 7, 7, 7],
    [6, 6, 0, 0, 0],
    [0, 0, 0, 0, 0],
]


def as_map(grid):
    return np.asarray(grid, "float32")[None, :, :, None]


def test_window_nms_reproduces_the_lecture_slide_with_a_vertical_window():
    # The slide keeps both 6s of row 2, although (2, 1) has the 7 at (1, 2)
    # as a diagonal neighbour: its result is a 3-tall, 1-wide window, each
    # value compared with the values above and below it.
    out = window_nms(as_map(SLIDE_GRID), window=(3, 1))
    np.testing.assert_array_equal(out[0, :, :, 0], SLIDE_RESULT)


def test_window_nms_3x3_on_the_lecture_grid():
    # Worked by hand: a value survives when no value within one cell, in
    # any direction, is larger (ties survive). The three 7s tie; the 6 at
    # (2, 0) sees at most 6; the 6 at (2, 1) sees the 7 at (1, 2); the 6 at
    # (0, 4) sees the 7s below it.
    expected = [
        [0, 0, 0, 0, 0],
        [0, 0, 7, 7, 7],
        [6, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    out = WindowNonMaxSuppression(window=3)(as_map(SLIDE_GRID))
    np.testing.assert_array_equal(out[0, :, :, 0], expected)


def test_window_nms_batches_channels_and_negative_values(rng):
    values = rng.normal(size=(2, 6, 7, 3)).astype("float32")
    out = np.asarray(window_nms(values, window=(3, 5)))
    padded = np.pad(values, [(0, 0), (1, 1), (2, 2), (0, 0)], constant_values=-np.inf)
    for b, i, j, c in np.ndindex(values.shape):
        peak = values[b, i, j, c] == padded[b, i : i + 3, j : j + 5, c].max()
        assert out[b, i, j, c] == (values[b, i, j, c] if peak else 0.0)


def test_window_nms_layer_passes_shared_checks(rng):
    values = rng.normal(size=(2, 5, 6, 2)).astype("float32")
    run_layer_test(
        WindowNonMaxSuppression, {"window": 3}, values, expected_output_shape=values.shape
    )


def test_window_nms_bad_arguments():
    with pytest.raises(ValueError, match="window=0"):
        WindowNonMaxSuppression(window=0)
    with pytest.raises(ValueError, match=r"window=\(3, 1, 1\)"):
        window_nms(as_map(SLIDE_GRID), window=(3, 1, 1))
    with pytest.raises(ValueError, match=r"values must be 4-D.*\(4, 5\)"):
        window_nms(np.asarray(SLIDE_GRID, "float32"))
    with pytest.raises(ValueError, match="expects 4-D values"):
        WindowNonMaxSuppression()(np.zeros((4, 5, 1), "float32"))


def test_static_batch_size_survives_the_loop(rng):
    """A traced call with a known batch size (e.g. one image) must keep it."""
    boxes = np.sort(rng.uniform(0, 50, size=(1, 20, 4)).astype("float32").reshape(1, 20, 2, 2), 2)
    boxes = boxes.transpose(0, 1, 3, 2).reshape(1, 20, 4)
    scores = rng.uniform(size=(1, 20)).astype("float32")
    layer = NonMaxSuppression(max_output_size=5, iou_threshold=0.5)
    traced = tf.function(lambda b, s: layer([b, s]))
    expected = layer([boxes, scores])
    for got, want in zip(traced(boxes, scores), expected):
        np.testing.assert_array_equal(got, want)
