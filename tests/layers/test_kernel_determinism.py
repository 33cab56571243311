"""The gradients of the fused kernels, repeated on two threads: the same
numbers every time.

TensorFlow's CPU gradient of `crop_and_resize` to the image adds the boxes'
contributions from several threads without synchronisation
(tensorflow/tensorflow#42033), so where boxes overlap it loses updates at
random; RoIAlign therefore computes that gradient itself
(`keras_segattn.layers.roi_align.crop_and_resize`). The suite runs
TensorFlow on one thread per process (tests/conftest.py, for speed: two
test processes share two cores), so the check runs in a process of its own
with two intra-op threads, on every fused kernel whose gradient a model
trains through.
"""

import json
import subprocess
import sys
import textwrap

import pytest

REPEATS = 20

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    import keras
    from keras_segattn.core.kernels import in_tensorflow, tflite_builtins_only
    from keras_segattn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, roi_align
    from keras_segattn.layers.spatial_transformer import bilinear_sample, sample_affine

    rng = np.random.default_rng(0)
    repeats = int(sys.argv[1])
    features = tf.constant(rng.normal(size=(2, 24, 24, 64)), tf.float32)
    # 300 overlapping boxes, each over a third to the whole of the map.
    corner = rng.uniform(0, 200, size=(2, 300, 2))
    extent = rng.uniform(128, 384, size=(2, 300, 2))
    boxes = tf.constant(np.concatenate([corner, corner + extent], -1), tf.float32)
    images = tf.constant(rng.uniform(0, 1, size=(8, 42, 42, 16)), tf.float32)
    theta = tf.constant(np.tile([[0.8, 0.1, 0.05, -0.1, 0.9, 0.0]], (8, 1)), tf.float32)
    grid = tf.constant(rng.uniform(-1.1, 1.1, size=(8, 28, 28, 2)), tf.float32)

    def roi(x, builtin=False):
        if builtin:
            with tflite_builtins_only():
                return roi_align(x, boxes, output_size=7, spatial_scale=1 / 16)
        return roi_align(x, boxes, output_size=7, spatial_scale=1 / 16)

    pool, unpool = MaxPoolingWithArgmax2D(2), MaxUnpooling2D(2)

    def pooling(x):
        values, switches = pool(x)
        return unpool([values, switches])

    cases = {
        "roi_align": (roi, features),
        "max_pool_with_argmax + unpooling": (pooling, images),
        "ImageProjectiveTransformV3": (lambda x: sample_affine(x, theta, 28, 28), images),
        "bilinear_sample (gather)": (lambda x: bilinear_sample(x, grid), images),
        "resize bilinear": (lambda x: tf.image.resize(x, (97, 61)), images),
        "resize nearest": (lambda x: tf.image.resize(x, (97, 61), method="nearest"), images),
    }

    def gradient_of(fn, x):
        # Traced as the package's TensorFlow graphs are: the fused kernels.
        @tf.function
        @in_tensorflow
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
                loss = tf.reduce_sum(y * tf.random.stateless_normal(tf.shape(y), (1, 2)))
            return tape.gradient(loss, x)
        return step

    report = {}
    for name, (fn, x) in cases.items():
        step = gradient_of(fn, x)
        gradients = [step(x).numpy() for _ in range(repeats)]
        report[name] = {
            "differing": sum(not np.array_equal(g, gradients[0]) for g in gradients[1:]),
            "largest": float(np.abs(gradients[0]).max()),
        }
    # RoIAlign's fused gradient against its gather formulation.
    builtin = gradient_of(lambda x: roi(x, builtin=True), features)(features).numpy()
    fused = gradient_of(roi, features)(features).numpy()
    report["roi_align"]["against_gather"] = float(np.abs(builtin - fused).max())
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def report():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPEATS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "kernel",
    [
        "roi_align",
        "max_pool_with_argmax + unpooling",
        "ImageProjectiveTransformV3",
        "bilinear_sample (gather)",
        "resize bilinear",
        "resize nearest",
    ],
)
def test_fused_gradients_repeat_exactly_on_two_threads(report, kernel):
    assert report[kernel]["largest"] > 0, "a zero gradient would repeat trivially"
    assert report[kernel]["differing"] == 0, f"{kernel}: {report[kernel]}"


@pytest.mark.slow
def test_roi_align_fused_gradient_equals_its_gather_formulation(report):
    assert report["roi_align"]["against_gather"] <= 1e-4 * report["roi_align"]["largest"]
