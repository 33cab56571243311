import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import pipeline, shapes
from keras_segattn.data import tfds as tfds_lib


def _examples(*sizes, value=1):
    def gen():
        for h, w in sizes:
            yield {
                "images": np.full((h, w, 3), 9, np.uint8),
                "segmentation_masks": np.full((h, w), value, np.int32),
            }

    return tf.data.Dataset.from_generator(
        gen,
        output_signature={
            "images": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_masks": tf.TensorSpec((None, None), tf.int32),
        },
    )


def test_shapes_pipeline_batches():
    ds = shapes.shapes_dataset(6, 32, instances=True, captions=True)
    batches = pipeline.segmentation_pipeline(ds, 4, num_classes=4, shuffle=6, seed=1)
    images, masks = next(iter(batches))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.uint8
    assert masks.shape == (4, 32, 32) and masks.dtype == tf.int32
    assert [int(x.shape[0]) for x, _ in batches] == [4, 2]


def test_augment_and_resize():
    ds = shapes.shapes_dataset(4, 40)
    out = pipeline.segmentation_pipeline(
        ds, 2, 4, image_size=48, crop_size=(32, 24), augment=True, repeat=True
    )
    assert out.element_spec[0].shape.as_list() == [None, 32, 24, 3]
    images, masks = next(iter(out))
    assert images.shape == (2, 32, 24, 3)
    assert set(np.unique(masks)) <= {0, 1, 2, 3, 255}
    resized = pipeline.segmentation_pipeline(ds, 4, 4, image_size=(20, 30))
    assert next(iter(resized))[1].shape == (4, 20, 30)


def test_different_sizes_are_padded_with_ignore():
    out = pipeline.segmentation_pipeline(_examples((20, 30), (24, 16)), 2, 4, ignore_class=7)
    images, masks = next(iter(out))
    assert images.shape == (2, 24, 30, 3) and masks.shape == (2, 24, 30)
    assert np.all(masks[0, 20:] == 7) and np.all(masks[1, :, 16:] == 7)
    assert not images[1, :, 16:].numpy().any() and np.all(masks[0, :20] == 1)


def test_pipeline_rejects_out_of_range_labels():
    out = pipeline.segmentation_pipeline(_examples((4, 4), value=14), 1, 11, ignore_class=11)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="num_classes=11 and ignore_class=11"
    ) as e:
        next(iter(out))
    assert "14" in str(e.value)
    ok = pipeline.segmentation_pipeline(_examples((4, 4), value=11), 1, 11, ignore_class=11)
    next(iter(ok))


def test_pipeline_argument_errors():
    with pytest.raises(ValueError, match="crop_size"):
        pipeline.segmentation_pipeline(_examples((4, 4)), 1, 4, augment=True)
    with pytest.raises(ValueError, match="segmentation_masks"):
        pipeline.segmentation_pipeline(tf.data.Dataset.range(3), 1, 4)


def test_numpy_label_check():
    pipeline.check_segmentation_labels(np.array([[0, 10], [11, 3]]), 11, 11)
    with pytest.raises(ValueError, match="class id 14 but num_classes=11 and ignore_class=11"):
        pipeline.check_segmentation_labels(np.array([[0, 14], [11, 3]]), 11, 11)
    with pytest.raises(ValueError, match="class ids -1, 12"):
        pipeline.check_segmentation_labels(np.array([-1, 12, 255]), 11, 255)


def test_median_frequency_weights_by_hand():
    masks = [np.array([[0, 0], [1, 255]]), np.array([[0, 2], [2, 2]])]
    # freq0 = 3 / (3 + 4), freq1 = 1 / 3, freq2 = 3 / 4; median = 3 / 7.
    expected = np.array([1.0, 9 / 7, 4 / 7, 0.0], np.float32)
    with pytest.warns(UserWarning, match=r"\[3\]"):
        weights = pipeline.median_frequency_weights(masks, 4, 255)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "segmentation_masks": np.stack(masks),
            "images": np.zeros((2, 2, 2, 3), np.uint8),
        }
    )
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(pipeline.median_frequency_weights(ds, 4), expected, rtol=1e-6)


def test_load_shapes_and_bad_spec():
    train, info = pipeline.load_segmentation_dataset("shapes", num_images=3, image_size=32)
    val, _ = pipeline.load_segmentation_dataset("shapes", "val", num_images=3, image_size=32)
    assert info == pipeline.DatasetInfo(4, 255, shapes.CLASS_NAMES, background_class=0)
    a, b = next(iter(train)), next(iter(val))
    assert a["images"].shape == (32, 32, 3)
    assert not np.array_equal(a["images"], b["images"])
    with pytest.raises(ValueError, match="camvid:<root>"):
        pipeline.load_segmentation_dataset("imagenet")
    with pytest.raises(
        ValueError, match=r"Unexpected option \['colour'\] for dataset spec 'shapes'"
    ):
        pipeline.load_segmentation_dataset("shapes", colour="red")
    with pytest.raises(ValueError, match="does not exist"):
        pipeline.load_segmentation_dataset("camvid:/nonexistent/camvid")


def test_tfds_feature_mapping():
    pet = tfds_lib.tfds_to_segmentation(
        {
            "image": np.zeros((2, 2, 3), np.uint8),
            "segmentation_mask": np.array([[[1], [2]], [[3], [2]]], np.uint8),
        },
        "oxford_iiit_pet",
    )
    np.testing.assert_array_equal(pet["segmentation_masks"], [[1, 0], [2, 0]])
    city = tfds_lib.tfds_to_segmentation(
        {
            "image_left": np.zeros((1, 4, 3), np.uint8),
            "segmentation_label": np.array([[[7], [26], [0], [200]]], np.uint8),
        },
        "cityscapes/semantic_segmentation",
    )
    np.testing.assert_array_equal(city["segmentation_masks"], [[0, 13, 255, 255]])
    assert city["segmentation_masks"].dtype == tf.int32
    assert tfds_lib.tfds_dataset_info("oxford_iiit_pet")[0] == 3
    with pytest.raises(ValueError, match="oxford_iiit_pet"):
        tfds_lib.tfds_to_segmentation({}, "mnist")


def test_label_check_without_ignore_class():
    with pytest.raises(ValueError, match=r"class id -1 .*valid ids are 0\.\.3\)"):
        pipeline.check_segmentation_labels(np.array([-1, 0]), 4, None)
    out = pipeline.segmentation_pipeline(
        _examples((4, 4), value=-1), 1, 4, ignore_class=None, image_size=4
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="ignore_class=None"):
        next(iter(out))
    with pytest.raises(ValueError, match="ignore_class=None"):
        pipeline.segmentation_pipeline(_examples((4, 4)), 1, 4, ignore_class=None)


def test_patch_pipeline_cuts_the_patch_around_a_labelled_pixel():
    from keras_segattn.data import patch_pipeline

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(9, 11, 3)).astype(np.uint8)
    mask = rng.integers(0, 3, size=(9, 11)).astype(np.int32)
    mask[0, 0] = 255  # ignored: never drawn
    data = tf.data.Dataset.from_tensors({"images": image, "segmentation_masks": mask})
    patches, labels = next(iter(patch_pipeline(data, 40, 5, 3, patches_per_image=40, seed=1)))
    assert patches.shape == (40, 5, 5, 3) and patches.dtype == tf.uint8
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])
    for patch, label in zip(patches.numpy(), labels.numpy()):
        # the centre pixel (2, 2) is the labelled one; find where it came from
        where = [
            (y, x)
            for y in range(9)
            for x in range(11)
            if np.array_equal(padded[y : y + 5, x : x + 5], patch)
        ]
        assert where and any(mask[y, x] == label for y, x in where)
        assert label != 255
    again = next(iter(patch_pipeline(data, 40, 5, 3, patches_per_image=40, seed=1)))
    np.testing.assert_array_equal(again[1], labels)  # reproducible by seed
