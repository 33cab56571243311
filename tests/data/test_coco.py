import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn.data import instances as coco
from keras_segattn.data.instances import (
    COCO_CATEGORIES,
    InstanceDatasetInfo,
    coco_instances,
    load_instance_dataset,
    resize_instances,
    shapes_instances,
)


def _rle(mask):
    """Uncompressed (crowd-style) COCO RLE of a binary mask."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def _annotation(ann_id, image_id, category_id, bbox, segmentation=None, iscrowd=0):
    if segmentation is None:
        x, y, w, h = bbox
        segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "segmentation": segmentation,
        "iscrowd": iscrowd,
        "area": 1.0,
    }


def _write_layout(root, annotations, images=None, categories=None, split="val", skip_files=()):
    """A tiny COCO layout: 2 PNG images of 20 x 30 (h x w) and one of 16 x 16."""
    images = images or [
        {"id": 7, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 3, "file_name": "b.png", "height": 20, "width": 30},
        {"id": 11, "file_name": "empty.png", "height": 16, "width": 16},
    ]
    categories = categories or [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, f"{split}2017"), exist_ok=True)
    rng = np.random.default_rng(0)
    for im in images:
        if im["file_name"] in skip_files:
            continue
        pixels = rng.integers(0, 255, (im["height"], im["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"{split}2017", im["file_name"]))
    data = {"images": images, "annotations": annotations, "categories": categories}
    with open(os.path.join(root, "annotations", f"instances_{split}2017.json"), "w") as f:
        json.dump(data, f)
    return root


def write_squares_layout(root, size=64):
    """train and val splits of 3 images with 1 or 2 squares each (classes 1, 2)."""
    images = [{"id": i, "file_name": f"{i}.png", "height": size, "width": size} for i in (1, 2, 3)]
    annotations = [
        _annotation(1, 1, 5, [4, 4, 20, 20]),
        _annotation(2, 1, 9, [30, 30, 24, 20]),
        _annotation(3, 2, 9, [10, 30, 30, 20]),
        _annotation(4, 3, 5, [40, 5, 16, 30]),
    ]
    for split in ("train", "val"):
        _write_layout(root, annotations, images=images, split=split)
    return root


def _crowd_mask():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:9, 20:28] = 1
    return mask


def _valid_annotations():
    return [
        _annotation(1, 7, 9, [2, 3, 10, 5]),
        _annotation(2, 7, 5, [12, 10, 6, 8]),
        _annotation(3, 7, 9, [20, 2, 8, 7], _rle(_crowd_mask()), iscrowd=1),
        _annotation(4, 3, 5, [0, 0, 30, 20]),
    ]


def _elements(dataset):
    return {int(ex["image_id"]): ex for ex in dataset.as_numpy_iterator()}


def test_coco_instances_synthetic_layout(tmp_path):
    root = _write_layout(str(tmp_path), _valid_annotations())
    dataset, info = coco_instances(root, "validation")
    # Contiguous ids by increasing category id: cat (5) -> 1, dog (9) -> 2.
    assert info.num_classes == 3
    assert info.class_names == ("background", "cat", "dog")
    assert info.category_ids == (0, 5, 9)
    assert info.category_id_to_label == {5: 1, 9: 2}
    assert info.annotation_file.endswith("instances_val2017.json")
    assert info.image_ids is None and info.has_masks

    assert [int(ex["image_id"]) for ex in dataset.as_numpy_iterator()] == [3, 7, 11]
    elements = _elements(dataset)
    a = elements[7]
    assert a["images"].shape == (20, 30, 3) and a["images"].dtype == np.uint8
    assert a["num_instances"] == 3
    np.testing.assert_allclose(
        a["bounding_boxes"]["boxes"], [[2, 3, 12, 8], [12, 10, 18, 18], [20, 2, 28, 9]]
    )
    assert a["bounding_boxes"]["labels"].tolist() == [2, 1, 2]
    assert a["bounding_boxes"]["labels"].dtype == np.int32
    assert a["is_crowd"].tolist() == [False, False, True]
    masks = a["instance_masks"]
    assert masks.shape == (3, 20, 30) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[2], _crowd_mask())
    # A rectangle polygon covers its box's pixels.
    rows, cols = np.nonzero(masks[0])
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (2, 3, 12, 8)
    # An image without annotations is kept, with N = 0.
    empty = elements[11]
    assert empty["num_instances"] == 0
    assert empty["bounding_boxes"]["boxes"].shape == (0, 4)
    assert empty["instance_masks"].shape == (0, 16, 16)
    assert empty["is_crowd"].shape == (0,)


def test_coco_instances_clips_and_drops_boxes(tmp_path):
    annotations = [
        _annotation(1, 7, 9, [-4, 2, 10, 5], [[0, 2, 6, 2, 6, 7, 0, 7]]),  # crosses the left
        _annotation(2, 7, 9, [25, 15, 10, 10], [[25, 15, 30, 15, 30, 20, 25, 20]]),  # and corner
        _annotation(3, 7, 5, [40, 2, 5, 5], [[1, 1, 3, 1, 3, 3]]),  # right of the image
        _annotation(4, 7, 5, [4, 4, 0, 6], [[4, 4, 5, 4, 5, 10]]),  # zero width
        _annotation(5, 3, 5, [1, 1, 5, 5]),
    ]
    root = _write_layout(str(tmp_path), annotations)
    with pytest.warns(UserWarning) as record:
        dataset, _ = coco_instances(root, "val")
    messages = [str(w.message) for w in record]
    dropped = [m for m in messages if "dropped" in m]
    clipped = [m for m in messages if "clipped" in m]
    assert len(dropped) == 1 and dropped[0].startswith("2 of 5") and "(3, 4)" in dropped[0]
    assert len(clipped) == 1 and clipped[0].startswith("2 of 5") and "(1, 2)" in clipped[0]
    a = _elements(dataset)[7]
    np.testing.assert_allclose(a["bounding_boxes"]["boxes"], [[0, 2, 6, 7], [25, 15, 30, 20]])
    assert a["instance_masks"].shape == (2, 20, 30)


def test_coco_instances_drops_annotations_without_valid_polygon(tmp_path):
    annotations = [
        _annotation(1, 7, 9, [2, 3, 10, 5], [[2, 3, 12, 3]]),  # 2 points only
        _annotation(2, 7, 9, [2, 3, 10, 5], []),
        _annotation(3, 7, 9, [2, 3, 10, 5]),
    ]
    root = _write_layout(str(tmp_path), annotations)
    with pytest.warns(UserWarning, match=r"2 of 3 .* no valid polygon or RLE .*\(1, 2\)"):
        dataset, _ = coco_instances(root, "val")
    assert _elements(dataset)[7]["num_instances"] == 1


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            _annotation(8, 7, 9, [20, 2, 8, 7], {"counts": [0, 100], "size": [10, 10]}, 1),
            r"Annotation 8 .* RLE mask of size 10x10 .* 20x30",
        ),
        (_annotation(8, 7, 4, [1, 1, 3, 3]), r"Annotation 8 .* category_id 4, which is not in"),
        (_annotation(8, 99, 9, [1, 1, 3, 3]), r"Annotation 8 .* image 99"),
        (_annotation(8, 7, 9, [1, 1, 3], [[1, 1, 3, 1, 3, 3]]), r"Annotation 8 .* bbox"),
        (_annotation(8, 7, 9, [1, 1, float("nan"), 3], [[1, 1, 3, 1, 3, 3]]), r"Annotation 8"),
    ],
)
def test_coco_instances_invalid_annotations_are_named(tmp_path, bad, match):
    root = _write_layout(str(tmp_path), _valid_annotations() + [bad])
    with pytest.raises(ValueError, match=match):
        coco_instances(root, "val")


def test_coco_instances_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="instances_val2017.json' does not exist"):
        coco_instances(str(tmp_path), "val")

    root = _write_layout(str(tmp_path / "partial"), _valid_annotations(), skip_files=("b.png",))
    with pytest.warns(UserWarning, match=r"1 of 3 images .* skipped \(b.png\)"):
        dataset, info = coco_instances(root, "val")
    assert info.image_ids == (7, 11)
    assert sorted(_elements(dataset)) == [7, 11]

    root = _write_layout(str(tmp_path / "none"), [], skip_files=("a.png", "b.png", "empty.png"))
    with pytest.raises(ValueError, match="None of the 3 images"):
        coco_instances(root, "val")

    root = _write_layout(str(tmp_path / "corrupt"), _valid_annotations())
    with open(os.path.join(root, "val2017", "b.png"), "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ValueError, match="b.png' is not a PNG or JPEG"):
        coco_instances(root, "val")

    root = _write_layout(str(tmp_path / "json"), [])
    with open(os.path.join(root, "annotations", "instances_val2017.json"), "w") as f:
        f.write('{"images": []')
    with pytest.raises(ValueError, match="not a valid COCO instances JSON"):
        coco_instances(root, "val")


def test_coco_instances_image_size_mismatch_names_file(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    root = _write_layout(str(tmp_path), [], images=images)
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(os.path.join(root, "val2017", "a.png"))
    dataset, _ = coco_instances(root, "val")
    with pytest.raises(Exception, match=r"a.png' \(image_id 1\) is 21x30"):
        next(iter(dataset))


def test_coco_mini_val_matches_pycocotools(shared_data):
    from pycocotools.coco import COCO

    root = os.path.join(shared_data, "coco_mini")
    dataset, info = coco_instances(root, "val")
    assert info.num_classes == 81 and len(info.class_names) == 81
    assert tuple(zip(info.category_ids[1:], info.class_names[1:])) == COCO_CATEGORIES
    gt = COCO(info.annotation_file)
    count, crowds = 0, 0
    for ex in dataset.take(25).as_numpy_iterator():
        count += 1
        image_id = int(ex["image_id"])
        anns = gt.loadAnns(gt.getAnnIds(imgIds=image_id))
        assert ex["num_instances"] == len(anns)
        assert ex["images"].shape[:2] == (gt.imgs[image_id]["height"], gt.imgs[image_id]["width"])
        for j, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            np.testing.assert_allclose(
                ex["bounding_boxes"]["boxes"][j], [x, y, x + w, y + h], rtol=1e-6
            )
            label = ex["bounding_boxes"]["labels"][j]
            assert info.category_ids[label] == ann["category_id"]
            assert ex["is_crowd"][j] == bool(ann["iscrowd"])
            np.testing.assert_array_equal(ex["instance_masks"][j], gt.annToMask(ann))
            crowds += ann["iscrowd"]
    assert count == 25
    assert crowds >= 1


def test_coco_mini_train_loads(shared_data):
    dataset, info = coco_instances(os.path.join(shared_data, "coco_mini"), "train")
    assert int(dataset.cardinality()) == 80
    assert info.image_ids is None
    ex = next(dataset.as_numpy_iterator())
    assert ex["instance_masks"].shape[1:] == ex["images"].shape[:2]
    labels = ex["bounding_boxes"]["labels"]
    assert labels.min() >= 1 and labels.max() <= 80


def test_shapes_instances_and_spec():
    dataset, info = load_instance_dataset("shapes", "val", num_images=3, image_size=32, seed=1)
    assert isinstance(info, InstanceDatasetInfo)
    assert info.num_classes == 4 and info.class_names[1:] == ("circle", "square", "triangle")
    assert info.category_ids == (0, 1, 2, 3) and info.annotation_file is None
    elements = list(dataset.as_numpy_iterator())
    assert [int(e["image_id"]) for e in elements] == [0, 1, 2]
    for e in elements:
        n = e["num_instances"]
        labels = e["bounding_boxes"]["labels"]
        assert labels.shape == (3,) and e["is_crowd"].shape == (3,) and not e["is_crowd"].any()
        assert np.all((labels[:n] >= 1) & (labels[:n] <= 3)) and np.all(labels[n:] == -1)
        assert e["instance_masks"].shape == (3, 32, 32)
    train, _ = load_instance_dataset("shapes", "train", num_images=3, image_size=32, seed=1)
    direct, _ = shapes_instances(3, image_size=32, seed=1)
    np.testing.assert_array_equal(
        next(train.as_numpy_iterator())["images"], next(direct.as_numpy_iterator())["images"]
    )
    assert not np.array_equal(elements[0]["images"], next(train.as_numpy_iterator())["images"])


def test_load_instance_dataset_routes_and_errors(tmp_path, shared_data):
    dataset, info = load_instance_dataset(f"coco:{os.path.join(shared_data, 'coco_mini')}", "val")
    assert info.num_classes == 81 and int(dataset.cardinality()) == 79
    with pytest.raises(
        ValueError, match="Unknown instances dataset spec 'voc:/data'.*'coco:<root>'"
    ):
        load_instance_dataset("voc:/data")
    with pytest.raises(ValueError, match="split for 'shapes'"):
        load_instance_dataset("shapes", "dev")
    with pytest.raises(ValueError, match=r"Unexpected option \['data_dir'\].*'coco:/data'"):
        load_instance_dataset("coco:/data", data_dir="x")
    with pytest.raises(ValueError, match="coco/2017"):
        load_instance_dataset("tfds:voc/2012")
    # Nothing prepared in data_dir and no download: a clear error, not a hang.
    with pytest.raises(RuntimeError, match="Could not load tfds dataset 'coco/2017'.*offline"):
        load_instance_dataset("tfds:coco/2017", "val", data_dir=str(tmp_path), download=False)


def test_tfds_example_conversion():
    example = {
        "image": tf.zeros((20, 40, 3), tf.uint8),
        "image/id": tf.constant(42, tf.int64),
        "objects": {
            "bbox": tf.constant([[0.1, 0.25, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]], tf.float32),
            "label": tf.constant([0, 79], tf.int64),
            "is_crowd": tf.constant([False, True]),
        },
    }
    out = coco._tfds_to_instances(example)
    np.testing.assert_allclose(out["bounding_boxes"]["boxes"], [[10, 2, 40, 10], [0, 0, 20, 20]])
    assert out["bounding_boxes"]["labels"].numpy().tolist() == [1, 80]
    assert out["is_crowd"].numpy().tolist() == [False, True]
    assert int(out["num_instances"]) == 2 and int(out["image_id"]) == 42


def test_resize_instances_scales_images_boxes_and_masks(tmp_path):
    root = _write_layout(str(tmp_path), _valid_annotations())
    dataset, _ = coco_instances(root, "val")
    resized = _elements(resize_instances(dataset, (40, 60)))  # 2x each way
    original = _elements(dataset)
    a = resized[7]
    assert a["images"].shape == (40, 60, 3) and a["images"].dtype == np.uint8
    np.testing.assert_allclose(
        a["bounding_boxes"]["boxes"], 2 * original[7]["bounding_boxes"]["boxes"]
    )
    assert a["bounding_boxes"]["labels"].tolist() == [2, 1, 2]
    assert a["is_crowd"].tolist() == [False, False, True] and a["num_instances"] == 3
    masks = a["instance_masks"]
    assert masks.shape == (3, 40, 60) and masks.dtype == np.uint8
    # Nearest-neighbour: every mask pixel doubles into a 2x2 block.
    np.testing.assert_array_equal(masks, original[7]["instance_masks"].repeat(2, 1).repeat(2, 2))
    # An image without instances, of another size, resizes too.
    assert resized[11]["images"].shape == (40, 60, 3)
    assert resized[11]["instance_masks"].shape == (0, 40, 60)
    # The shapes keep their semantic label map, resized the same way.
    shapes, _ = load_instance_dataset("shapes", "val", num_images=1, image_size=32)
    example = next(resize_instances(shapes, 64).as_numpy_iterator())
    assert example["segmentation_masks"].shape == (64, 64)
    assert example["images"].shape == (64, 64, 3)


@pytest.mark.parametrize("size", [None, 0, (10,), "big", (4, -1)])
def test_resize_instances_rejects_bad_sizes(size):
    dataset, _ = load_instance_dataset("shapes", "val", num_images=1, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        resize_instances(dataset, size)


def test_resize_instances_rejects_other_datasets():
    dataset, _ = load_instance_dataset("shapes", "val", num_images=2, image_size=32)
    with pytest.raises(ValueError, match="unbatched"):
        resize_instances(dataset.batch(2), 16)
    with pytest.raises(ValueError, match="instance dicts"):
        resize_instances(tf.data.Dataset.from_tensor_slices(np.zeros((2, 8, 8, 3))), 16)
