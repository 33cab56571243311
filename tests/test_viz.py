import numpy as np
import pytest

from keras_segattn.viz import draw_instances, label_palette


def test_draw_instances_paints_masks_boxes_and_labels():
    image = np.full((40, 50, 3), 100, np.uint8)
    boxes = np.array([[5, 5, 25, 30], [30, 10, 45, 35]], np.float32)
    masks = np.zeros((2, 40, 50), np.uint8)
    masks[0, 12:28, 8:22] = 1
    masks[1, 15:30, 33:42] = 1
    out = draw_instances(
        image,
        boxes,
        masks,
        classes=[1, 2],
        scores=[0.9, 0.2],
        class_names=["bg", "cat", "dog"],
        min_score=0.5,
    )
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((40, 50, 3), 100, np.uint8))  # not drawn in place
    colour = label_palette(32)[1].astype(np.float32)
    np.testing.assert_allclose(out[20, 15], np.floor(0.5 * 100 + 0.5 * colour), atol=1)
    np.testing.assert_array_equal(out[25, 5], colour)  # the box's left edge
    # The second instance scores below min_score: left undrawn.
    np.testing.assert_array_equal(out[20:30, 34:41], image[20:30, 34:41])
    # The label's box sits at the top-left corner, in the instance's colour.
    assert np.any(np.all(out[7:12, 7:20] == colour, axis=-1))
    # Boxes alone, no classes or scores, draw too.
    plain = draw_instances(image, boxes)
    assert np.any(plain != image) and np.array_equal(plain[20, 15], image[20, 15])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image": np.zeros((8, 8), np.uint8)}, "image must be"),
        ({"boxes": np.zeros((2, 5))}, "boxes must be"),
        ({"masks": np.zeros((2, 8, 9))}, "masks must be"),
        ({"classes": [1]}, "classes must have one value per box"),
        ({"scores": [0.5, 0.5, 0.5]}, "scores must have one value per box"),
    ],
)
def test_draw_instances_rejects_mismatched_inputs(kwargs, match):
    arguments = {"image": np.zeros((8, 8, 3), np.uint8), "boxes": np.zeros((2, 4))}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        draw_instances(**arguments)
