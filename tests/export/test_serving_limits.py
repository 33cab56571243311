"""An exported model cannot be knocked over by a request: images and
batches past the limits set at export are refused, by index, before they
are decoded or computed, with the memory of the serving process bounded."""

import resource

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import BYTES_SIGNATURE_KEY, ServingLimits, export_saved_model
from keras_segattn.models import create_model

GIB = 2**30


@pytest.fixture(scope="module")
def signatures(tmp_path_factory):
    """A tiny FCN-8s exported with the default limits (2048 x 2048 an image,
    twice that a request)."""
    model = create_model("fcn8s", preset="tiny", num_classes=3)
    path = export_saved_model(model, tmp_path_factory.mktemp("limits"))
    return tf.saved_model.load(path).signatures


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def refused(signature, message, **inputs):
    """Runs `signature`, expecting a refusal naming `message`; returns how
    far the process' peak memory rose."""
    before = peak_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(**inputs)
    return peak_bytes() - before


def forged_png(height, width):
    """A real 8x8 PNG whose header claims `height` x `width`."""
    data = bytearray(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR
    return bytes(data)


def forged_jpeg(height, width):
    """A real 16x16 JPEG whose frame header claims `height` x `width`."""
    data = bytearray(tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy())
    start = data.index(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), height, width
    data[start : start + 4] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_limits_are_checked_where_they_are_set():
    assert ServingLimits().max_batch_pixels == 2 * ServingLimits().max_pixels
    with pytest.raises(ValueError, match="max_batch_pixels .* must be at least max_pixels"):
        ServingLimits(max_pixels=100, max_batch_pixels=10)
    with pytest.raises(ValueError, match="max_pixels"):
        ServingLimits(max_pixels=0)


@pytest.mark.parametrize("forge", [forged_png, forged_jpeg])
def test_a_forged_header_is_refused_before_decoding(signatures, forge):
    good = tf.io.encode_png(np.zeros((40, 40, 3), np.uint8)).numpy()
    batch = tf.constant([good, forge(60000, 60000)])
    rise = refused(
        signatures[BYTES_SIGNATURE_KEY],
        r"image_bytes\[1\] is 60000x60000 pixels, more than the 4194304 this model serves",
        image_bytes=batch,
    )
    assert rise < GIB


@pytest.mark.slow
@pytest.mark.parametrize("encode", [tf.io.encode_png, tf.io.encode_jpeg])
def test_a_real_small_file_of_a_huge_image_is_refused_with_memory_bounded(signatures, encode):
    # 6000 x 6000 black: 108 MB of pixels in a file of ~100 kB (PNG), ~1 MB (JPEG).
    encoded = encode(tf.zeros([6000, 6000, 3], tf.uint8)).numpy()
    assert len(encoded) < 2**21
    rise = refused(
        signatures[BYTES_SIGNATURE_KEY],
        r"image_bytes\[0\] is 6000x6000 pixels",
        image_bytes=tf.constant([encoded]),
    )
    assert rise < GIB, f"the refusal took {rise / GIB:.2f} GiB"


def test_a_large_image_among_tiny_ones_is_not_padded_past_the_batch_limit(signatures):
    large = tf.io.encode_png(tf.zeros([2000, 2000, 3], tf.uint8)).numpy()  # 4 MP: allowed alone
    tiny = tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)).numpy()
    rise = refused(
        signatures[BYTES_SIGNATURE_KEY],
        r"64 images padded to 2000x2000 are 256000000 pixels, more than the 8388608",
        image_bytes=tf.constant([large] + [tiny] * 63),
    )
    assert rise < GIB  # the [64, 2000, 2000, ...] outputs were never allocated


def test_a_large_tensor_is_refused_before_the_network_runs(signatures):
    images = tf.zeros([1, 3000, 3000, 3], tf.uint8)  # 27 MB
    rise = refused(
        signatures["serving_default"],
        r"images: a batch of 1 images of 3000x3000 pixels is more than this model serves",
        images=images,
    )
    assert rise < GIB
    batch = tf.zeros([8, 1500, 1500, 3], tf.uint8)  # each image allowed, not all eight
    refused(signatures["serving_default"], r"a batch of 8 images of 1500x1500", images=batch)


def test_a_request_within_the_limits_is_served(signatures):
    png = tf.io.encode_png(np.zeros((48, 40, 3), np.uint8)).numpy()
    outputs = signatures[BYTES_SIGNATURE_KEY](image_bytes=tf.constant([png, png]))
    assert outputs["class_map"].shape == (2, 48, 40)
