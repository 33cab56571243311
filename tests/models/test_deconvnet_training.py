import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data.augment import object_centred_crop
from keras_segattn.models import create_model
from keras_segattn.recipes.semantic import compile_segmenter, object_centred_dataset, two_stage_fit


def example_with_one_object():
    mask = np.zeros((60, 80), np.int32)
    mask[40:46, 60:70] = 2  # the only non-background object
    mask[0:3, 0:3] = 255
    image = np.zeros((60, 80, 3), np.uint8)
    image[mask == 2] = 200
    return {"images": tf.constant(image), "segmentation_masks": tf.constant(mask)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crop_is_centred_on_the_object(seed):
    crop = object_centred_crop(
        example_with_one_object(),
        (20, 20),
        tf.constant([seed, 7]),
        ignore_class=255,
        background_class=0,
    )
    mask = crop["segmentation_masks"].numpy()
    assert mask.shape == (20, 20)
    assert mask[10, 10] == 2  # the centre pixel is an object pixel
    # Images and masks stay aligned; padding outside the image is ignored.
    assert np.all((crop["images"].numpy()[..., 0] == 200) == (mask == 2))


def test_without_objects_the_crop_is_central():
    image = np.zeros((30, 30, 3), np.uint8)
    image[15, 15] = 255  # marks the centre
    example = {"images": tf.constant(image), "segmentation_masks": tf.zeros((30, 30), tf.int32)}
    crop = object_centred_crop(example, 10, tf.constant([0, 0]), background_class=0)
    assert crop["segmentation_masks"].shape == (10, 10)
    assert crop["images"].numpy()[5, 5, 0] == 255


def test_two_stage_fit_runs_both_stages():
    data = tf.data.Dataset.from_tensors(example_with_one_object()).repeat(4)
    stage1 = object_centred_dataset(data, (32, 32), ignore_class=255, background_class=0)
    stage1 = stage1.map(lambda e: (e["images"], e["segmentation_masks"])).batch(2)
    stage2 = data.map(lambda e: (e["images"], e["segmentation_masks"])).batch(2)
    model = create_model("deconvnet", num_classes=3, width=0.0625)
    compile_segmenter(model, 3, ignore_class=255, jit_compile=False)
    crops, images = (lambda e: stage1), (lambda e: stage2)  # the same batches every epoch
    first, second = two_stage_fit(model, crops, images, 1, 2, verbose=0)
    assert len(first.history["loss"]) == 1 and len(second.history["loss"]) == 1
    with pytest.raises(ValueError, match="stage1_epochs"):
        two_stage_fit(model, crops, images, 3, 2)
