import os

import numpy as np
from PIL import Image

# The colours of the SegNet CamVid tutorial for its 11 classes.
CAMVID_PALETTE = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)


def label_palette(num_classes):
    """`(num_classes, 3)` uint8 colours: the PASCAL VOC colour map.

    Class 0 is black, so background stays unpainted in overlays.
    """
    palette = np.zeros((num_classes, 3), np.uint8)
    for label in range(num_classes):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def colorize(class_map, palette, ignore_class=None):
    """Colours an `(h, w)` class map; ignored or unknown ids become white."""
    palette = np.asarray(palette, np.uint8)
    class_map = np.asarray(class_map)
    known = (class_map >= 0) & (class_map < len(palette))
    if ignore_class is not None:
        known &= class_map != ignore_class
    colours = np.full(class_map.shape + (3,), 255, np.uint8)
    colours[known] = palette[class_map[known]]
    return colours


def overlay(image, class_map, palette, alpha=0.55, ignore_class=None):
    """Blends the coloured `class_map` over an RGB `image` (uint8).

    Pixels whose class colour is black (background in the VOC colour map)
    are left as they are.
    """
    colours = colorize(class_map, palette, ignore_class)
    image = np.asarray(image, np.float32)
    blended = (1 - alpha) * image + alpha * colours.astype(np.float32)
    blended = np.where(np.any(colours > 0, axis=-1, keepdims=True), blended, image)
    return np.clip(blended, 0, 255).astype(np.uint8)


def panel_row(panels, gap=4):
    """Concatenates equally tall uint8 RGB images left to right, white gaps."""
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, spacer)][:-1], axis=1)


def save_png(path, array):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def save_panels(path, image, predicted, palette, ground_truth=None, ignore_class=None):
    """Writes a PNG: the image, the predicted overlay and, if given, the truth.

    Returns:
        `path`.
    """
    panels = [np.asarray(image, np.uint8), overlay(image, predicted, palette)]
    if ground_truth is not None:
        panels.append(overlay(image, ground_truth, palette, ignore_class=ignore_class))
    return save_png(path, panel_row(panels))
