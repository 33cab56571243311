import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import augment, shapes

IGNORE = 255
# Colours whose channels are only 0 or 200: any bilinear blend of two or
# more of them has an intermediate channel, so an exact code pixel is an
# unblended one.
CODES = np.array(
    [
        (200, 0, 0),
        (0, 200, 0),
        (0, 0, 200),
        (200, 200, 0),
        (200, 0, 200),
        (0, 200, 200),
    ],
    np.uint8,
)


def _coded_example(h=40, w=56, block=8, seed=0):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(CODES), (h // block + 1, w // block + 1))
    labels = np.kron(blocks, np.ones((block, block), np.int64))[:h, :w]
    return {
        "images": tf.constant(CODES[labels]),
        "segmentation_masks": tf.constant(labels, tf.int32),
    }


def _decode(image):
    """Label per pixel from its exact code colour, -1 for blends, -2 for 0."""
    matches = np.all(image[:, :, None, :] == CODES[None, None], axis=-1)
    out = np.where(matches.any(-1), matches.argmax(-1), -1)
    return np.where(np.all(image == 0, axis=-1), -2, out)


def test_flip_crop_pad_keep_exact_alignment():
    ex = _coded_example()
    for s in range(6):
        out = augment.augment_segmentation(
            ex,
            tf.constant([s, 7]),
            crop_size=(32, 64),
            scale_range=None,
            ignore_class=IGNORE,
        )
        image, mask = out["images"].numpy(), out["segmentation_masks"].numpy()
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (32, 64) and mask.dtype == np.int32
        decoded = _decode(image)
        padded = mask == IGNORE
        assert padded.sum() == 32 * 8  # width 56 padded to 64
        assert np.all(decoded[padded] == -2)
        np.testing.assert_array_equal(decoded[~padded], mask[~padded])


def test_scaling_never_interpolates_labels():
    ex = _coded_example()
    input_ids = set(np.unique(ex["segmentation_masks"].numpy()))
    for s in range(8):
        out = augment.augment_segmentation(
            ex, tf.constant([s, 1]), crop_size=48, scale_range=(0.5, 1.6)
        )
        image, mask = out["images"].numpy(), out["segmentation_masks"].numpy()
        assert set(np.unique(mask)) <= input_ids | {IGNORE}
        decoded = _decode(image)
        exact = decoded >= 0
        assert exact[mask != IGNORE].mean() > 0.6
        np.testing.assert_array_equal(decoded[exact], mask[exact])
        assert np.all(mask[decoded == -2] == IGNORE)


def test_same_seed_same_result():
    ex = _coded_example()
    runs = [
        augment.augment_segmentation(ex, tf.constant([s, 0]), crop_size=32)["images"].numpy()
        for s in (3, 3, 4)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def _find_flip(ex, flipped):
    for s in range(20):
        out = augment.augment_segmentation(
            ex, tf.constant([s, 0]), crop_size=(64, 64), scale_range=None
        )
        if np.array_equal(out["images"].numpy(), ex["images"].numpy()[:, ::-1]) == flipped:
            return out
    raise AssertionError("no seed gave the wanted flip")


def test_flip_swaps_caption_relations_and_boxes():
    (ex,) = shapes.shapes_dataset(1, 64, seed=2, instances=True, captions=True)
    ex = dict(ex)
    ex["captions"] = tf.constant("a red circle left of a blue square right of it")
    out = _find_flip(ex, flipped=True)
    assert out["captions"].numpy() == b"a red circle right of a blue square left of it"
    n = int(ex["num_instances"])
    boxes = ex["bounding_boxes"]["boxes"].numpy()[:n]
    expected = np.stack([64 - boxes[:, 2], boxes[:, 1], 64 - boxes[:, 0], boxes[:, 3]], -1)
    np.testing.assert_allclose(out["bounding_boxes"]["boxes"].numpy()[:n], expected)
    kept = _find_flip(ex, flipped=False)
    assert kept["captions"].numpy() == ex["captions"].numpy()


def test_instances_follow_scale_and_crop():
    ds = shapes.shapes_dataset(6, 64, seed=4, instances=True)
    for i, ex in enumerate(ds):
        out = augment.augment_segmentation(ex, tf.constant([i, 9]), crop_size=40)
        n = int(out["num_instances"])
        labels = out["bounding_boxes"]["labels"].numpy()
        assert np.all(labels[:n] >= 1) and np.all(labels[n:] == -1)
        masks = out["instance_masks"].numpy()
        assert not masks[n:].any()
        for box, mask in zip(out["bounding_boxes"]["boxes"].numpy()[:n], masks[:n]):
            rows, cols = np.nonzero(mask)
            if rows.size:  # nearest resampling may lose a sliver entirely
                assert cols.min() >= box[0] - 1.5 and cols.max() + 1 <= box[2] + 1.5
                assert rows.min() >= box[1] - 1.5 and rows.max() + 1 <= box[3] + 1.5
        semantic = out["segmentation_masks"].numpy()
        for label, mask in zip(labels[:n], masks[:n]):
            assert np.all(semantic[mask.astype(bool)] == label)


def test_resize_example():
    ex = _coded_example()
    out = augment.resize_example(ex, (20, 28))
    assert out["images"].shape == (20, 28, 3) and out["images"].dtype == tf.uint8
    mask = out["segmentation_masks"].numpy()
    assert mask.dtype == np.int32
    assert set(np.unique(mask)) <= set(np.unique(ex["segmentation_masks"].numpy()))


def test_center_crop_or_pad():
    ex = _coded_example(h=40, w=56)
    out = augment.center_crop_or_pad(ex, (30, 60), ignore_class=IGNORE)
    mask = out["segmentation_masks"].numpy()
    np.testing.assert_array_equal(mask[:, 2:58], ex["segmentation_masks"].numpy()[5:35])
    assert np.all(mask[:, :2] == IGNORE) and np.all(mask[:, 58:] == IGNORE)
    assert not out["images"].numpy()[:, :2].any()


def test_augment_dataset_is_reproducible_and_static():
    def build():
        ds = tf.data.Dataset.from_tensors(_coded_example()).repeat(4)
        return augment.augment_dataset(ds, crop_size=(24, 32), seed=5)

    ds = build()
    assert ds.element_spec["images"].shape == (24, 32, 3)
    first = [ex["images"].numpy() for ex in ds]
    second = [ex["images"].numpy() for ex in build()]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(first[0], x) for x in first[1:])


def test_bad_arguments():
    ex = _coded_example()
    with pytest.raises(TypeError, match="crop_size"):
        augment.augment_segmentation(ex, tf.constant([0, 0]), crop_size="big")
    with pytest.raises(ValueError, match="seed"):
        augment.augment_segmentation(ex, tf.constant(0), crop_size=8)
    with pytest.raises(TypeError, match="images"):
        augment.resize_example(ex["images"], 8)
