"""Image helpers every floor may use."""

import tensorflow as tf


def resize_image_uint8(image, size):
    """Resizes uint8 images (bilinear), rounded and clipped back to uint8:
    what a client resizing its own pixels sends."""
    resized = tf.image.resize(tf.cast(image, tf.float32), size)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def as_client_uint8(image, size=None):
    """A uint8 image as a client sends it, resized (and rounded) to `size`."""
    return tf.cast(image, tf.uint8) if size is None else resize_image_uint8(image, size)
