import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers.anchors import (
    BBOX_XFORM_CLIP,
    AnchorGenerator,
    anchors_inside,
    box_iou,
    decode_boxes,
    encode_boxes,
    match_anchors,
    sample_anchors,
)
from keras_segattn.testing import run_layer_test
from tests import references


def _random_boxes(rng, count, height, width, min_size=4.0):
    x1 = rng.uniform(-0.1 * width, width - min_size, count)
    y1 = rng.uniform(-0.1 * height, height - min_size, count)
    x2 = np.minimum(x1 + rng.uniform(min_size, 0.6 * width, count), 1.1 * width)
    y2 = np.minimum(y1 + rng.uniform(min_size, 0.6 * height, count), 1.1 * height)
    return np.stack([x1, y1, x2, y2], axis=1).astype("float32")


# --------------------------------------------------------------------------
# AnchorGenerator
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scales": (64, 128, 256, 512)},
        {"scales": (8.0, 20.0), "aspect_ratios": (1.0, 3.0), "stride": 7},
    ],
)
def test_anchor_generator_matches_reference(kwargs):
    layer = AnchorGenerator(**kwargs)
    anchors = np.asarray(layer(np.zeros((2, 3, 5, 4), "float32")))
    expected = references.anchors_reference(3, 5, layer.scales, layer.aspect_ratios, layer.stride)
    assert anchors.dtype == np.float32
    assert anchors.shape == (3 * 5 * layer.num_anchors, 4)
    np.testing.assert_allclose(anchors, expected, atol=1e-4)


def test_anchor_generator_shared_checks(rng):
    x = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    out = run_layer_test(AnchorGenerator, {}, x, expected_output_shape=(3 * 5 * 9, 4), fit=False)
    np.testing.assert_allclose(
        out, references.anchors_reference(3, 5, (128, 256, 512), (0.5, 1.0, 2.0), 16), atol=1e-4
    )


def test_anchor_generator_presets_and_geometry():
    default, faster, mnc = AnchorGenerator(), AnchorGenerator.faster_rcnn(), AnchorGenerator.mnc()
    assert default.num_anchors == faster.num_anchors == 9
    assert default.get_config()["scales"] == faster.get_config()["scales"]
    assert mnc.num_anchors == 12 and mnc.scales == (64.0, 128.0, 256.0, 512.0)
    assert AnchorGenerator.from_config(mnc.get_config()).num_anchors == 12
    base = mnc.base_anchors()
    widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    # Area scale ** 2, height / width the ratio, ratio outer and scale inner.
    np.testing.assert_allclose(widths * heights, np.tile(np.array(mnc.scales) ** 2, 3), rtol=1e-5)
    np.testing.assert_allclose(heights / widths, np.repeat([0.5, 1.0, 2.0], 4), rtol=1e-5)
    # The centre of position (0, 0) is the centre of the first 16 x 16 block.
    np.testing.assert_allclose((base[:, :2] + base[:, 2:]) / 2 + 8.0, 8.0)


def test_anchor_generator_dynamic_size():
    layer = AnchorGenerator.mnc()
    symbolic = layer(keras.Input((None, None, 3)))
    assert tuple(symbolic.shape) == (None, 4)
    assert tuple(layer(keras.Input((4, 6, 3))).shape) == (4 * 6 * 12, 4)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
    def anchors(features):
        return layer(features)

    for h, w in ((1, 1), (2, 7), (5, 3)):
        out = anchors(tf.zeros((1, h, w, 3))).numpy()
        np.testing.assert_allclose(
            out,
            references.anchors_reference(h, w, (64, 128, 256, 512), (0.5, 1.0, 2.0), 16),
            atol=1e-4,
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scales": (128, -1)}, "scales"),
        ({"scales": ()}, "scales"),
        ({"aspect_ratios": (0.0,)}, "aspect_ratios"),
        ({"aspect_ratios": "wide"}, "aspect_ratios"),
        ({"stride": 0}, "stride"),
        ({"stride": 2.5}, "stride"),
    ],
)
def test_anchor_generator_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnchorGenerator(**kwargs)


# --------------------------------------------------------------------------
# Box coding and IoU
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_match_reference_and_round_trip(weights, rng):
    anchors = _random_boxes(rng, 50, 60, 80)
    boxes = _random_boxes(rng, 50, 60, 80)
    deltas = np.asarray(encode_boxes(boxes, anchors, weights))
    np.testing.assert_allclose(
        deltas, references.encode_boxes_reference(boxes, anchors, weights), rtol=1e-4, atol=1e-4
    )
    decoded = np.asarray(decode_boxes(deltas, anchors, weights))
    np.testing.assert_allclose(
        decoded,
        references.decode_boxes_reference(deltas, anchors, weights, BBOX_XFORM_CLIP),
        atol=1e-3,
    )
    np.testing.assert_allclose(decoded, boxes, atol=1e-3)

    # Batched boxes against shared anchors.
    batched = np.stack([boxes, boxes[::-1]])
    batched_deltas = np.asarray(encode_boxes(batched, anchors, weights))
    np.testing.assert_allclose(batched_deltas[0], deltas, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(decode_boxes(batched_deltas, anchors, weights)), batched, atol=1e-3
    )


def test_decode_clips_size_deltas_and_image():
    anchors = np.array([[0.0, 0.0, 16.0, 32.0], [10.0, 10.0, 20.0, 20.0]], "float32")
    deltas = np.array([[0.0, 0.0, 20.0, -1.0], [0.5, 0.0, 0.0, 100.0]], "float32")
    boxes = np.asarray(decode_boxes(deltas, anchors))
    np.testing.assert_allclose(
        boxes,
        references.decode_boxes_reference(deltas, anchors, clip_value=BBOX_XFORM_CLIP),
        rtol=1e-5,
    )
    # dw = 20 is clipped to log(1000 / 16): the box is 1000 / 16 anchors wide.
    np.testing.assert_allclose(boxes[0, 2] - boxes[0, 0], 16 * 1000 / 16, rtol=1e-5)
    assert np.all(np.isfinite(boxes))
    unclipped = np.asarray(decode_boxes(deltas[:1], anchors[:1], clip_value=None))
    np.testing.assert_allclose(unclipped[0, 2] - unclipped[0, 0], 16 * np.exp(20.0), rtol=1e-4)
    inside = np.asarray(decode_boxes(deltas, anchors, image_size=(30, 40)))
    assert inside.min() >= 0 and inside[:, [0, 2]].max() <= 40 and inside[:, [1, 3]].max() <= 30
    np.testing.assert_allclose(inside[1], [15.0, 0.0, 25.0, 30.0], atol=1e-4)


def test_box_coding_weights_errors():
    anchors = np.zeros((1, 4), "float32")
    with pytest.raises(ValueError, match="weights"):
        encode_boxes(anchors, anchors, weights=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights"):
        decode_boxes(anchors, anchors, weights=(1.0, 1.0, 0.0, 1.0))


def test_box_iou_matches_reference(rng):
    a = _random_boxes(rng, 13, 50, 70)
    b = _random_boxes(rng, 7, 50, 70)
    b[0] = a[3]
    np.testing.assert_allclose(
        np.asarray(box_iou(a, b)), references.box_iou_reference(a, b), atol=1e-6
    )
    assert np.isclose(np.asarray(box_iou(a, b))[3, 0], 1.0)
    batched = np.asarray(box_iou(a, np.stack([b, b[::-1]])))
    assert batched.shape == (2, 13, 7)
    np.testing.assert_allclose(batched[1], references.box_iou_reference(a, b[::-1]), atol=1e-6)
    assert np.asarray(box_iou(a, np.zeros((0, 4), "float32"))).shape == (13, 0)
    # Padding boxes of -1 have zero area and overlap nothing.
    assert np.all(np.asarray(box_iou(a, -np.ones((2, 4), "float32"))) == 0)


# --------------------------------------------------------------------------
# Matching and sampling
# --------------------------------------------------------------------------


def _grid_anchors():
    # A 40 x 56 image, stride 8: small enough for the loop reference.
    layer = AnchorGenerator(scales=(12, 24), aspect_ratios=(0.5, 1.0, 2.0), stride=8)
    return np.asarray(layer(np.zeros((1, 5, 7, 1), "float32")))


@pytest.mark.parametrize("image_size", [None, (40, 56)])
def test_match_anchors_matches_reference(image_size, rng):
    anchors = _grid_anchors()
    for _ in range(3):
        gt = _random_boxes(rng, 6, 40, 56)
        valid = np.array([True, True, True, True, False, True])
        labels, matched = match_anchors(anchors, gt, valid, image_size=image_size)
        inside = None
        if image_size is not None:
            inside = np.asarray(anchors_inside(anchors, image_size))
            assert 0 < inside.sum() < len(anchors)
        ref_labels, ref_matched = references.match_anchors_reference(
            anchors, gt, valid, inside=inside
        )
        np.testing.assert_array_equal(np.asarray(labels), ref_labels)
        np.testing.assert_array_equal(np.asarray(matched), ref_matched)
        assert np.all(np.asarray(matched)[np.asarray(labels) == 1] >= 0)
        assert not np.any(np.asarray(matched) == 4)


def test_match_anchors_low_quality_ties_and_thresholds():
    anchors = np.array(
        [[0, 0, 16, 16], [16, 0, 32, 16], [32, 0, 48, 16], [100, 100, 116, 116]], "float32"
    )
    # Exactly between anchors 0 and 1: both have IoU 1/3, below 0.7, and tie.
    gt = np.array([[8, 0, 24, 16]], "float32")
    labels, matched = match_anchors(anchors, gt, [True])
    assert np.asarray(labels).tolist() == [1, 1, 0, 0]
    assert np.asarray(matched).tolist() == [0, 0, -1, -1]
    labels, _ = match_anchors(anchors, gt, [True], allow_low_quality_matches=False)
    # IoU 1/3 is between the thresholds: ignored.
    assert np.asarray(labels).tolist() == [-1, -1, 0, 0]
    labels, _ = match_anchors(anchors, gt, [True], 0.3, 0.3, allow_low_quality_matches=False)
    assert np.asarray(labels).tolist() == [1, 1, 0, 0]
    # A box far from every anchor claims none of them.
    far = np.array([[8, 0, 24, 16], [500, 500, 520, 520]], "float32")
    labels, matched = match_anchors(anchors, far, [True, True])
    assert np.asarray(labels).tolist() == [1, 1, 0, 0]
    assert np.asarray(matched).tolist() == [0, 0, -1, -1]


def test_match_anchors_empty_and_padded_ground_truth(rng):
    anchors = _grid_anchors()
    labels, matched = match_anchors(anchors, np.zeros((0, 4), "float32"), np.zeros(0, bool))
    assert np.all(np.asarray(labels) == 0) and np.all(np.asarray(matched) == -1)
    # Padding in the package's format: boxes of -1; validity from the boxes.
    padding = -np.ones((3, 4), "float32")
    labels, matched = match_anchors(anchors, padding)
    assert np.all(np.asarray(labels) == 0) and np.all(np.asarray(matched) == -1)
    labels, _ = match_anchors(anchors, padding, np.zeros(3, bool), image_size=(40, 56))
    inside = np.asarray(anchors_inside(anchors, (40, 56)))
    np.testing.assert_array_equal(np.asarray(labels), np.where(inside, 0, -1))
    # Padding rows change nothing for the real boxes.
    gt = _random_boxes(rng, 2, 40, 56)
    padded = np.concatenate([gt, padding])
    plain = match_anchors(anchors, gt, [True, True])
    with_padding = match_anchors(anchors, padded, [True, True, False, False, False])
    for a, b in zip(plain, with_padding):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_match_anchors_batched_and_in_tf_data(rng):
    anchors = _grid_anchors()
    gt = np.stack([_random_boxes(rng, 4, 40, 56), -np.ones((4, 4), "float32")])
    valid = np.array([[True, True, True, False], [False] * 4])
    labels, matched = match_anchors(anchors, gt, valid, image_size=(40, 56))
    assert labels.shape == matched.shape == (2, len(anchors))
    for n in range(2):
        single = match_anchors(anchors, gt[n], valid[n], image_size=(40, 56))
        np.testing.assert_array_equal(np.asarray(labels)[n], np.asarray(single[0]))
        np.testing.assert_array_equal(np.asarray(matched)[n], np.asarray(single[1]))

    # Per-image ground truth of varying length, as a tf.data map.
    boxes = tf.ragged.constant([gt[0][:3].tolist(), []], ragged_rank=1, inner_shape=(4,))
    dataset = tf.data.Dataset.from_tensor_slices(boxes).map(
        lambda b: sample_anchors(
            match_anchors(anchors, b, tf.ones(tf.shape(b)[:1], tf.bool), image_size=(40, 56))[0],
            batch_size_per_image=32,
            seed=(1, 2),
        )
    )
    first, second = [x.numpy() for x in dataset]
    assert (first == 1).sum() >= 3 and ((first == 0) | (first == 1)).sum() == 32
    assert (second == 1).sum() == 0 and (second == 0).sum() == 32


def test_match_anchors_threshold_errors():
    anchors = np.zeros((1, 4), "float32")
    with pytest.raises(ValueError, match="negative_iou"):
        match_anchors(anchors, anchors, positive_iou=0.3, negative_iou=0.7)
    with pytest.raises(ValueError, match="positive_iou"):
        match_anchors(anchors, anchors, positive_iou=1.5)


def test_sample_anchors_counts_and_subset(rng):
    labels = rng.choice([1, 0, 0, 0, -1], size=(3, 400)).astype("int32")
    labels[1, :] = np.where(labels[1] == 1, 0, labels[1])  # no positive at all
    labels[1, :5] = 1
    sampled = np.asarray(sample_anchors(labels, 64, 0.25, seed=3))
    for n in range(3):
        pos, neg = (labels[n] == 1).sum(), (labels[n] == 0).sum()
        num_pos = min(pos, 16)
        assert (sampled[n] == 1).sum() == num_pos
        assert (sampled[n] == 0).sum() == min(neg, 64 - num_pos)
        kept = sampled[n] != -1
        np.testing.assert_array_equal(sampled[n][kept], labels[n][kept])
    # Few positives: the minibatch is filled with negatives.
    assert (sampled[1] == 1).sum() == 5 and (sampled[1] == 0).sum() == 59
    # Fewer labelled anchors than the minibatch: all of them are kept.
    small = np.array([1, 0, -1, 0], "int32")
    np.testing.assert_array_equal(np.asarray(sample_anchors(small, 256, seed=0)), small)


def test_sample_anchors_seeds_and_uniformity():
    labels = np.array([1] * 10 + [0] * 30, "int32")
    a = np.asarray(sample_anchors(labels, 8, 0.5, seed=7))
    np.testing.assert_array_equal(a, np.asarray(sample_anchors(labels, 8, 0.5, seed=7)))
    draws = np.stack([np.asarray(sample_anchors(labels, 8, 0.5, seed=s)) for s in range(300)])
    assert not np.all(draws == draws[0])
    # Each positive is kept with probability 4 / 10, each negative 4 / 30.
    pos_rate = (draws[:, :10] == 1).mean(axis=0)
    neg_rate = (draws[:, 10:] == 0).mean(axis=0)
    assert np.all(np.abs(pos_rate - 0.4) < 0.12), pos_rate
    assert np.all(np.abs(neg_rate - 4 / 30) < 0.08), neg_rate
    unseeded = np.asarray(sample_anchors(labels, 8, 0.5))
    assert (unseeded == 1).sum() == 4 and (unseeded == 0).sum() == 4


def test_sample_anchors_errors():
    with pytest.raises(ValueError, match="batch_size_per_image"):
        sample_anchors(np.zeros(4, "int32"), 0)
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_anchors(np.zeros(4, "int32"), 4, 1.5)


def test_anchors_and_decoding_convert_to_builtin_tflite(tmp_path, rng):
    from keras_segattn.export.tflite import convert_to_tflite, run_tflite

    generator = AnchorGenerator.mnc()

    class Proposals(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 48])])
        def serve(self, deltas):
            anchors = generator(deltas)
            return {
                "boxes": decode_boxes(tf.reshape(deltas, [-1, 4]), anchors, image_size=(64, 96))
            }

    module = Proposals()
    path = str(tmp_path / "proposals")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    x = (0.1 * rng.normal(size=(1, 4, 6, 48))).astype("float32")
    out = run_tflite(convert_to_tflite(path), {"deltas": x})["boxes"]
    np.testing.assert_allclose(out, module.serve(x)["boxes"].numpy(), atol=1e-4)
