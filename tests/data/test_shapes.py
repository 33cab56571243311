import time

import numpy as np
import tensorflow as tf

from keras_segattn.data import shapes


def test_same_seed_same_arrays_different_seed_differs():
    a = shapes.generate_shapes(6, seed=1)
    b = shapes.generate_shapes(6, seed=1)
    c = shapes.generate_shapes(6, seed=2)
    for key in ("images", "segmentation_masks", "instance_masks", "boxes", "labels"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["captions"] == b["captions"]
    assert not np.array_equal(a["images"], c["images"])


def test_shapes_dtypes_and_rectangular_size():
    d = shapes.generate_shapes(3, image_size=(48, 64), max_instances=4)
    assert d["images"].shape == (3, 48, 64, 3) and d["images"].dtype == np.uint8
    assert d["segmentation_masks"].shape == (3, 48, 64)
    assert d["segmentation_masks"].dtype == np.int32
    assert d["instance_masks"].shape == (3, 4, 48, 64)
    assert d["instance_masks"].dtype == np.uint8
    assert d["boxes"].shape == (3, 4, 4) and d["boxes"].dtype == np.float32
    assert d["labels"].shape == (3, 4) and d["labels"].dtype == np.int32
    assert len(d["captions"]) == 3


def test_instances_boxes_and_semantic_mask_agree():
    d = shapes.generate_shapes(40, image_size=64, seed=3)
    for i in range(40):
        n = d["num_instances"][i]
        assert 1 <= n <= 3
        assert np.all(d["labels"][i, :n] >= 1) and np.all(d["labels"][i, n:] == -1)
        assert np.all(d["boxes"][i, n:] == -1)
        assert not d["instance_masks"][i, n:].any()
        masks = d["instance_masks"][i, :n].astype(bool)
        assert masks.sum(axis=0).max() <= 1  # visible parts are disjoint
        assert np.all(masks.sum(axis=(1, 2)) >= 20)
        painted = np.zeros((64, 64), np.int32)
        for label, mask in zip(d["labels"][i, :n], masks):
            painted[mask] = label
        np.testing.assert_array_equal(painted, d["segmentation_masks"][i])
        for box, mask in zip(d["boxes"][i, :n], masks):
            rows, cols = np.nonzero(mask)
            np.testing.assert_array_equal(
                box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            )


def test_captions_name_visible_colours_and_shapes():
    d = shapes.generate_shapes(30, seed=5)
    names = {tuple(v): k for k, v in shapes.PALETTE.items()}
    for i, caption in enumerate(d["captions"]):
        assert caption == caption.lower() and caption.startswith("a ")
        n = d["num_instances"][i]
        for label, mask in zip(d["labels"][i, :n], d["instance_masks"][i, :n]):
            colour = names[tuple(d["images"][i][mask.astype(bool)][0])]
            assert f"{colour} {shapes.CLASS_NAMES[label]}" in caption
        relations = ("above", "below", "left of", "right of")
        assert (n > 1) == any(f" {r} " in caption for r in relations)


def test_caption_relation_matches_positions():
    d = shapes.generate_shapes(30, seed=6)
    for i, caption in enumerate(d["captions"]):
        if d["num_instances"][i] < 2:
            continue
        (y0, x0), (y1, x1) = [np.argwhere(m).mean(axis=0) for m in d["instance_masks"][i, :2]]
        if " above " in caption:
            assert y0 < y1
        elif " below " in caption:
            assert y0 > y1
        elif " left of " in caption:
            assert x0 < x1
        else:
            assert x0 > x1


def test_shapes_dataset_elements():
    ds = shapes.shapes_dataset(4, image_size=32, instances=True, captions=True)
    spec = ds.element_spec
    assert spec["images"].shape == (32, 32, 3) and spec["images"].dtype == tf.uint8
    assert spec["segmentation_masks"].dtype == tf.int32
    assert spec["bounding_boxes"]["boxes"].shape == (3, 4)
    assert spec["bounding_boxes"]["labels"].dtype == tf.int32
    assert spec["instance_masks"].shape == (3, 32, 32)
    assert spec["num_instances"].dtype == tf.int32
    assert spec["captions"].dtype == tf.string
    assert set(shapes.shapes_dataset(2, 32).element_spec) == {
        "images",
        "segmentation_masks",
    }


def test_generation_is_fast():
    start = time.perf_counter()
    shapes.generate_shapes(300, image_size=64)
    assert time.perf_counter() - start < 5.0
