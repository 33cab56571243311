import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn.data import folders

CAMVID = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "camvid")


def _palette_png(path, indices):
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[:21] = np.random.default_rng(0).integers(0, 256, (21, 3))
    palette[255] = (224, 224, 192)
    im.putpalette(palette.reshape(-1).tolist())
    im.save(path)


@pytest.fixture
def voc_root(tmp_path):
    os.makedirs(tmp_path / "JPEGImages")
    os.makedirs(tmp_path / "SegmentationClass")
    os.makedirs(tmp_path / "ImageSets" / "Segmentation")
    rng = np.random.default_rng(0)
    masks = {}
    for image_id, mode in (("2007_000001", "RGB"), ("2007_000002", "L")):
        shape = (20, 30, 3) if mode == "RGB" else (20, 30)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
            tmp_path / "JPEGImages" / f"{image_id}.jpg"
        )
        masks[image_id] = rng.choice([0, 5, 20, 255], size=(20, 30))
        _palette_png(tmp_path / "SegmentationClass" / f"{image_id}.png", masks[image_id])
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000002\n")
    return tmp_path, masks


@pytest.mark.skipif(not os.path.isdir(CAMVID), reason="CamVid not available")
def test_camvid_files_and_first_examples():
    images, masks = folders.list_camvid_files(CAMVID, "train")
    assert len(images) == len(masks) == 367 and images == sorted(images)
    ds = folders.folder_dataset(images[:3], masks[:3])
    assert ds.element_spec["images"].shape.as_list() == [None, None, 3]
    for ex in ds:
        assert ex["images"].shape == (360, 480, 3) and ex["images"].dtype == tf.uint8
        assert ex["segmentation_masks"].shape == (360, 480)
        assert ex["segmentation_masks"].dtype == tf.int32
        values = ex["segmentation_masks"].numpy()
        assert values.min() >= 0 and values.max() <= folders.CAMVID_IGNORE_CLASS
    ds = folders.camvid_dataset(CAMVID, "val")
    assert set(ds.element_spec) == {"images", "segmentation_masks"}


def test_voc_reads_palette_indices_and_split_list(voc_root):
    root, masks = voc_root
    ds = folders.voc_dataset(root, "train")
    (ex,) = list(ds)
    assert ex["images"].shape == (20, 30, 3)  # greyscale JPEG made RGB
    np.testing.assert_array_equal(ex["segmentation_masks"].numpy(), masks["2007_000002"])


def test_voc_without_split_list_is_an_error_listing_the_lists(voc_root):
    root, _ = voc_root
    with pytest.raises(ValueError, match=r"val.txt' does not exist.*\['train.txt'\]"):
        folders.list_voc_files(root, "val")


def _camvid_tree(root, names=("a", "b")):
    os.makedirs(root / "train")
    os.makedirs(root / "trainannot")
    for name in names:
        Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(root / "train" / f"{name}.jpg")
        Image.fromarray(np.ones((8, 12), np.uint8)).save(root / "trainannot" / f"{name}.png")


def test_missing_annotation_is_named(tmp_path):
    _camvid_tree(tmp_path)
    os.remove(tmp_path / "trainannot" / "b.png")
    expected = f"CamVid image '{tmp_path / 'train' / 'b.jpg'}' has no annotation"
    with pytest.raises(ValueError, match=expected):
        folders.camvid_dataset(tmp_path, "train")


def test_missing_split_is_reported(tmp_path):
    _camvid_tree(tmp_path)
    with pytest.raises(ValueError, match="split='val'"):
        folders.camvid_dataset(tmp_path, "val")


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_corrupt_image_is_named(tmp_path, content):
    _camvid_tree(tmp_path)
    (tmp_path / "train" / "a.jpg").write_bytes(content)
    with pytest.raises(ValueError, match="a.jpg"):
        folders.camvid_dataset(tmp_path, "train")


def test_rgb_mask_is_rejected(tmp_path):
    _camvid_tree(tmp_path)
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "trainannot" / "a.png")
    with pytest.raises(ValueError, match="a.png' is an RGB PNG"):
        folders.camvid_dataset(tmp_path, "train")


def test_size_mismatch_fails_with_message(tmp_path):
    _camvid_tree(tmp_path, names=("a",))
    Image.fromarray(np.ones((9, 12), np.uint8)).save(tmp_path / "trainannot" / "a.png")
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in size"):
        list(folders.camvid_dataset(tmp_path, "train"))


@pytest.mark.parametrize("name, kind", [("a.jpg", "JPEG"), ("a.png", "PNG")])
def test_truncated_files_are_named_before_training(tmp_path, name, kind):
    _camvid_tree(tmp_path)
    path = tmp_path / ("train" if name.endswith(".jpg") else "trainannot") / name
    path.write_bytes(path.read_bytes()[:-20])  # a copy cut short
    what = "Image" if kind == "JPEG" else "Segmentation mask"
    with pytest.raises(ValueError, match=f"{what} '{path}' is a truncated {kind}"):
        folders.camvid_dataset(tmp_path, "train")


def test_an_out_of_range_label_names_its_file(tmp_path):
    _camvid_tree(tmp_path, names=("a",))
    mask = np.ones((8, 12), np.uint8)
    mask[2, 3] = 200
    Image.fromarray(mask).save(tmp_path / "trainannot" / "a.png")
    expected = rf"Segmentation mask.*{tmp_path / 'trainannot' / 'a.png'}.*outside \[0, 11\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        list(folders.camvid_dataset(tmp_path, "train"))


def test_damage_inside_an_intact_file_is_named_before_training(tmp_path):
    _camvid_tree(tmp_path)
    path = tmp_path / "train" / "a.jpg"
    data = bytearray(path.read_bytes())
    data[20:-2] = b"\x00" * (len(data) - 22)  # header and end marker kept
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"Image '{path}' cannot be decoded .*corrupt"):
        folders.camvid_dataset(tmp_path, "train")
