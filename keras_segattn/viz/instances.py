"""Instances drawn on their image: masks blended in, boxes and labels."""

import numpy as np
from PIL import Image, ImageDraw

from keras_segattn.viz.overlay import label_palette


def draw_instances(
    image,
    boxes,
    masks=None,
    classes=None,
    scores=None,
    class_names=None,
    min_score=0.0,
    alpha=0.5,
    width=2,
):
    """Draws detections (or ground truth) on an RGB image.

    Instance `i` gets its own colour (the VOC colour map, from 1): its
    mask blended in with weight `alpha`, its box outlined, and a label
    (`class_names[classes[i]]`, or the class id, then the score) at the
    box's top-left corner. Instances scoring below `min_score` are skipped.
    Pass the `detect` outputs of one image, cut to `num_detections`.

    Args:
        image: uint8 `(H, W, 3)`.
        boxes: `(N, 4)` `"xyxy"` pixels.
        masks: `None` or `(N, H, W)`, nonzero inside each instance.
        classes: `None` or `(N,)` int class ids.
        scores: `None` or `(N,)` floats.
        class_names: `None` or a sequence indexed by class id.
        min_score: float. Defaults to `0.0`.
        alpha: float in `[0, 1]`. Mask opacity. Defaults to `0.5`.
        width: int. Box outline width in pixels. Defaults to `2`.

    Returns:
        uint8 `(H, W, 3)`: a new image.

    Raises:
        ValueError: an image that is not `(H, W, 3)`, boxes that are not
            `(N, 4)`, masks not `(N, H, W)`, or `classes` / `scores` of
            another length than the boxes.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB; got shape {image.shape}.")
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) 'xyxy' pixels; got shape {boxes.shape}.")
    count = len(boxes)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (count, *image.shape[:2]):
            raise ValueError(
                f"masks must be (N, H, W) = {(count, *image.shape[:2])} for {count} boxes on a "
                f"{image.shape[0]}x{image.shape[1]} image; got shape {masks.shape}."
            )
    for name, values in (("classes", classes), ("scores", scores)):
        if values is not None and np.shape(values) != (count,):
            raise ValueError(
                f"{name} must have one value per box ({count}); got shape {np.shape(values)}."
            )
    keep = [i for i in range(count) if scores is None or scores[i] >= min_score]
    palette = label_palette(32)[1:]
    colours = [palette[rank % len(palette)] for rank in range(len(keep))]
    canvas = image.astype(np.float32)
    if masks is not None:
        for i, colour in zip(keep, colours):
            inside = masks[i].astype(bool)
            canvas[inside] = (1 - alpha) * canvas[inside] + alpha * colour
    picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for i, colour in zip(keep, colours):
        colour = tuple(int(c) for c in colour)
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        label = []
        if classes is not None:
            class_id = int(classes[i])
            named = class_names is not None and 0 <= class_id < len(class_names)
            label.append(class_names[class_id] if named else str(class_id))
        if scores is not None:
            label.append(f"{float(scores[i]):.2f}")
        if label:
            text = " ".join(label)
            left, top, right, bottom = draw.textbbox((x1 + width, y1 + width), text)
            draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=colour)
            draw.text((x1 + width, y1 + width), text, fill=(255, 255, 255))
    return np.asarray(picture)
