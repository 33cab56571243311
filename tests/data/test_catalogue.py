"""The dataset catalogue: one registry, one loader call, one error type."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn.data import (
    DATA_TYPES,
    CaptionDatasetInfo,
    DatasetInfo,
    InstanceDatasetInfo,
    folder_dataset,
    generation_options,
    get_dataset_entry,
    is_generated,
    list_datasets,
    load_caption_dataset,
    load_dataset,
    load_instance_dataset,
    load_segmentation_dataset,
    register_dataset,
    shapes_captions,
    shapes_dataset,
    unregister_dataset,
)


def _png_folder(root, split, count=2, size=(8, 12)):
    """Writes `root/split/{images,masks}/*.png`: `count` images, masks with ids 0..2."""
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(root, split, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = np.full(size, i % 3, np.uint8)
        Image.fromarray(image).save(os.path.join(root, split, "images", f"{i}.png"))
        Image.fromarray(mask).save(os.path.join(root, split, "masks", f"{i}.png"))


def load_pngdir(root, split, num_classes=3):
    """A folder of PNG images and masks (the module docstring's example)."""
    images = sorted(glob.glob(f"{root}/{split}/images/*.png"))
    masks = sorted(glob.glob(f"{root}/{split}/masks/*.png"))
    names = tuple(f"class_{i}" for i in range(num_classes))
    return folder_dataset(images, masks, num_classes, 255), DatasetInfo(num_classes, 255, names)


@pytest.fixture
def pngdir():
    """Registers the throwaway `pngdir` kind for one test, then removes it."""
    register_dataset("pngdir", "segmentation", load_pngdir, arg="<root>")
    yield
    unregister_dataset("pngdir", "segmentation")
    assert "pngdir" not in [e.kind for e in list_datasets()]


def test_the_built_in_specs_are_listed_from_the_catalogue():
    patterns = {t: [e.pattern for e in list_datasets(t)] for t in DATA_TYPES}
    assert patterns["segmentation"] == ["shapes", "camvid:<root>", "voc:<root>", "tfds:<name>"]
    assert patterns["instances"] == ["shapes", "coco:<root>", "tfds:coco/2017"]
    assert patterns["captions"] == [
        "shapes",
        "coco:<root>",
        "flickr8k:<root>",
        "tfds:coco_captions",
    ]
    assert {e.kind for e in list_datasets(generated=True)} == {"shapes"}
    assert all(e.doc for e in list_datasets())
    with pytest.raises(ValueError, match="data_type must be one of.*'captions'.*got 'caption'"):
        list_datasets("caption")


@pytest.mark.parametrize(
    "entry", list_datasets(generated=True), ids=lambda e: f"{e.data_type}-{e.kind}"
)
def test_every_generated_dataset_keeps_its_data_types_contract(entry):
    options = generation_options(entry.pattern, num_images=2, image_size=32)
    dataset, info = load_dataset(entry.data_type, entry.pattern, "val", **options)
    contract = DATA_TYPES[entry.data_type]
    assert isinstance(info, contract.info_class)
    assert set(contract.keys) <= set(dataset.element_spec)
    assert int(dataset.cardinality()) == 2
    assert next(iter(dataset))["images"].shape == (32, 32, 3)


def test_the_wrappers_are_the_catalogue():
    for wrapper, data_type in (
        (load_segmentation_dataset, "segmentation"),
        (load_instance_dataset, "instances"),
        (load_caption_dataset, "captions"),
    ):
        old, old_info = wrapper("shapes", "test", num_images=1, image_size=32, seed=3)
        new, new_info = load_dataset(
            data_type, "shapes", "test", num_images=1, image_size=32, seed=3
        )
        assert old_info == new_info
        np.testing.assert_array_equal(next(iter(old))["images"], next(iter(new))["images"])
    assert isinstance(new_info, CaptionDatasetInfo)


def test_one_error_type_for_bad_specs_and_options():
    with pytest.raises(
        ValueError, match="Unknown segmentation dataset spec 'coco:/x'.*'voc:<root>'"
    ):
        load_dataset("segmentation", "coco:/x")
    with pytest.raises(ValueError, match="'shapes:big'.*'shapes' takes no argument"):
        load_dataset("instances", "shapes:big")
    with pytest.raises(ValueError, match="'camvid'.*needs an argument, as in 'camvid:<root>'"):
        load_dataset("segmentation", "camvid")
    with pytest.raises(ValueError, match="spec must be a string.*'tfds:coco/2017'.*got None"):
        load_dataset("instances", None)
    with pytest.raises(
        ValueError, match=r"Unexpected option \['num_images'\].*'voc:/x'.*no options"
    ):
        load_dataset("segmentation", "voc:/x", num_images=3)
    with pytest.raises(ValueError, match=r"Unexpected options \['a', 'b'\].*'shapes'.*'seed'"):
        load_dataset("captions", "shapes", a=1, b=2)
    with pytest.raises(ValueError, match="data_type must be one of"):
        load_dataset("masks", "shapes")


def test_a_registered_dataset_loads_without_editing_a_loader(tmp_path, pngdir):
    _png_folder(tmp_path, "val")
    spec = f"pngdir:{tmp_path}"
    dataset, info = load_dataset("segmentation", spec, "val", num_classes=4)
    assert info == DatasetInfo(4, 255, ("class_0", "class_1", "class_2", "class_3"))
    masks = [e["segmentation_masks"] for e in dataset.as_numpy_iterator()]
    assert [int(m[0, 0]) for m in masks] == [0, 1] and masks[0].shape == (8, 12)
    old, old_info = load_segmentation_dataset(spec, "val")
    assert old_info.num_classes == 3 and int(old.cardinality()) == 2
    assert "pngdir:<root>" in [e.pattern for e in list_datasets("segmentation")]
    entry, arg = get_dataset_entry("segmentation", spec)
    assert (
        entry.loader is load_pngdir and arg == str(tmp_path) and entry.options == ("num_classes",)
    )
    assert not is_generated(spec) and generation_options(spec, num_images=3) == {}
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("pngdir", "segmentation", load_pngdir, arg="<root>")
    # Only for the data type it was registered for.
    with pytest.raises(ValueError, match="Unknown captions dataset spec 'pngdir:"):
        load_caption_dataset(spec)
    with pytest.raises(ValueError, match=r"Unexpected option \['num_images'\].*'pngdir:"):
        load_segmentation_dataset(spec, "val", num_images=2)


def test_a_generated_dataset_is_known_by_its_flag_not_its_name():
    @register_dataset("tiny_shapes", "segmentation", generated=True)
    def tiny(arg, split, num_images=2, image_size=24):
        """Very small shapes."""
        info = DatasetInfo(4, 255, ("background", "circle", "square", "triangle"), 0)
        return shapes_dataset(num_images, image_size=image_size), info

    try:
        assert is_generated("tiny_shapes") and not is_generated("tiny_shapes:x")
        assert generation_options("tiny_shapes", num_images=3, image_size=None) == {"num_images": 3}
        from keras_segattn.data.pipeline import GENERATED_DATASETS

        assert GENERATED_DATASETS == ("shapes", "tiny_shapes")
        dataset, _ = load_segmentation_dataset("tiny_shapes", **generation_options("tiny_shapes"))
        assert int(dataset.cardinality()) == 2
        assert get_dataset_entry("segmentation", "tiny_shapes")[0].doc == "Very small shapes."
    finally:
        unregister_dataset("tiny_shapes", "segmentation")
    assert not is_generated("tiny_shapes")


def test_loaders_that_break_the_contract_are_named():
    def no_info(arg, split):
        return shapes_dataset(1, image_size=24)

    def wrong_info(arg, split):
        return shapes_captions(1, image_size=24), DatasetInfo(4, 255, ("a", "b", "c", "d"))

    def wrong_elements(arg, split):
        dataset = tf.data.Dataset.from_tensor_slices({"images": np.zeros((1, 4, 4, 3), np.uint8)})
        return dataset, DatasetInfo(1, 255, ("a",))

    cases = [
        (no_info, "segmentation", r"must return \(dataset, info\); got _TensorSliceDataset"),
        (wrong_info, "captions", "must return a CaptionDatasetInfo as info; got DatasetInfo"),
        (wrong_elements, "segmentation", r"keys \['images', 'segmentation_masks'\]"),
    ]
    for loader, data_type, message in cases:
        register_dataset("broken", data_type, loader)
        try:
            with pytest.raises(ValueError, match=f"loader of 'broken'.*{message}"):
                load_dataset(data_type, "broken")
        finally:
            unregister_dataset("broken", data_type)


def test_registration_is_checked():
    def loader(arg, split):
        return None

    with pytest.raises(ValueError, match="kind must be a non-empty string without ':'"):
        register_dataset("a:b", "segmentation", loader)
    with pytest.raises(ValueError, match="data_type must be one of"):
        register_dataset("a", "semantic", loader)
    with pytest.raises(ValueError, match=r"loader must take \(arg, split, \*\*options\)"):
        register_dataset("a", "segmentation", lambda split: None)
    with pytest.raises(ValueError, match="loader must be callable"):
        register_dataset("a", "segmentation", "not a function")
    with pytest.raises(ValueError, match="No segmentation dataset of kind 'a'"):
        unregister_dataset("a", "segmentation")
    assert "a" not in [e.kind for e in list_datasets()]


def test_old_import_paths_still_work():
    from keras_segattn.data import captions, catalogue, instances, pipeline

    assert pipeline.DatasetInfo is catalogue.DatasetInfo is DatasetInfo
    assert instances.InstanceDatasetInfo is catalogue.InstanceDatasetInfo is InstanceDatasetInfo
    assert captions.CaptionDatasetInfo is CaptionDatasetInfo
    assert pipeline.is_generated is is_generated
    assert pipeline.generation_options is generation_options
    assert pipeline.GENERATED_DATASETS == ("shapes",)
    with pytest.raises(AttributeError, match="no attribute 'NOT_THERE'"):
        pipeline.NOT_THERE  # noqa: B018
