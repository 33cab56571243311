"""What deterministic training costs.

    python benchmarks/determinism.py            # the README's figures (about 10 min on 2 cores)
    python benchmarks/determinism.py --quick    # small sizes, a smoke run

- RoIAlign's gradient to the feature map: the package's own (each sample's
  bilinear weights added back by `unsorted_segment_sum`, in a fixed order)
  against TensorFlow's `CropAndResizeGradImage` (which adds from several
  threads without synchronisation, tensorflow/tensorflow#42033) and against
  the gradient of the gather formulation that the TFLite trace gets;
  forward and backward, side by side in one process.
- A training epoch of each task's recipe with and without `deterministic=
  True` (`--deterministic`), the two runs in turns in one process: the
  median of the epochs after the first (which traces).

Results go to stdout and to benchmarks/determinism.md.
"""

import argparse
import importlib
import os
import sys
import tempfile

import numpy as np
from timing import machine, report, side_by_side


def roi_align_rows(quick, repeats):
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow, tflite_builtins_only
    from keras_segattn.layers import roi_align

    rng = np.random.default_rng(0)
    channels, num_boxes = (32, 50) if quick else (256, 300)
    features = tf.constant(rng.normal(size=(2, 38, 50, channels)).astype("float32"))
    corners = rng.uniform(0, 500, (2, num_boxes, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(16, 300, (2, num_boxes, 2))], -1)
    boxes = tf.constant(boxes.astype("float32"))
    upstream = tf.constant(rng.normal(size=(2, num_boxes, 14, 14, channels)).astype("float32"))

    def step(pool):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(pool(features) * upstream)
        return tape.gradient(loss, features)

    def ours(x):
        return roi_align(x, boxes, 14, 2, 1 / 16)

    def racing(x):  # the same fused forward, TensorFlow's own gradient
        return racing_align(x, boxes, 14, 2, 1 / 16)

    def sparse(x):
        # The same fused forward, the gradient as a sparse matmul.
        module = importlib.import_module("keras_segattn.layers.roi_align")
        original = module._crop_and_resize_image_gradient
        module._crop_and_resize_image_gradient = sparse_image_gradient
        try:
            return roi_align(x, boxes, 14, 2, 1 / 16)
        finally:
            module._crop_and_resize_image_gradient = original

    fused = tf.function(in_tensorflow(lambda: step(ours)))
    theirs = tf.function(in_tensorflow(lambda: step(racing)))
    matmul = tf.function(in_tensorflow(lambda: step(sparse)))
    with tflite_builtins_only():
        gathers = tf.function(lambda: step(ours)).get_concrete_function()
    t = side_by_side([fused, theirs, gathers, matmul], repeats)
    # The same gradient 20 times: how many differ from the first, by how
    # much. The race needs boxes that overlap a lot: 300 boxes each over a
    # third to all of a 24x24 map (as tests/layers/test_kernel_determinism.py).
    dense = tf.constant(rng.normal(size=(2, 24, 24, 64)).astype("float32"))
    corners = rng.uniform(0, 200, size=(2, 300, 2))
    overlapping = np.concatenate([corners, corners + rng.uniform(128, 384, (2, 300, 2))], -1)
    overlapping = tf.constant(overlapping.astype("float32"))
    seeds = tf.random.stateless_normal([2, 300, 7, 7, 64], (1, 2))
    races = []
    for pool in (roi_align, racing_align):
        gradient = tf.function(
            in_tensorflow(lambda pool=pool: repeat_gradient(pool, dense, overlapping, seeds))
        )
        first = gradient().numpy()
        spread = [np.abs(gradient().numpy() - first).max() for _ in range(19)]
        races.append((sum(d > 0 for d in spread), max(spread), np.abs(first).max()))
    what = f"`roi_align` forward + backward, 2 x {num_boxes} boxes, 14x14, {channels} channels"
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    repeats_line = (
        f"A 300-box gradient on a 24x24x64 map, computed 20 times on {threads} threads: "
        f"ours, {races[0][0]} of 19 "
        f"repeats differ from the first "
        f"(by up to {races[0][1]:.3g}); TensorFlow's, {races[1][0]} of 19 (by up to "
        f"{races[1][1]:.3g}, where the gradient reaches {races[1][2]:.3g})."
    )
    return [
        repeats_line,
        "",
        "| what | ours (ms) | the alternative | its time (ms) | ratio |",
        "|---|---|---|---|---|",
        f"| {what} | {t[0]:.1f} | TensorFlow's gradient (races) | {t[1]:.1f} | {t[0] / t[1]:.2f} |",
        f"|   the same | {t[0]:.1f} | the gather formulation's gradient | {t[2]:.1f} | "
        f"{t[0] / t[2]:.2f} |",
        f"|   the same | {t[0]:.1f} | the weights as a sparse matrix, `sparse_dense_matmul` | "
        f"{t[3]:.1f} | {t[0] / t[3]:.2f} |",
    ]


def racing_align(features, boxes, *args):
    """`roi_align` with TensorFlow's own gradient of `crop_and_resize`."""
    import tensorflow as tf

    from keras_segattn.layers import roi_align

    module = importlib.import_module("keras_segattn.layers.roi_align")
    original = module.crop_and_resize
    module.crop_and_resize = lambda i, b, n, s: tf.image.crop_and_resize(i, b, n, s)
    try:
        return roi_align(features, boxes, *args)
    finally:
        module.crop_and_resize = original


def repeat_gradient(pool, features, boxes, upstream):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(features)
        loss = tf.reduce_sum(pool(features, boxes, 7, 2, 1 / 16) * upstream)
    return tape.gradient(loss, features)


def sparse_image_gradient(upstream, image_shape, boxes, box_indices, crop_h, crop_w):
    """`crop_and_resize`'s gradient to the image as the transposed product of
    the sparse matrix of every sample's four bilinear weights."""
    import tensorflow as tf

    module = importlib.import_module("keras_segattn.layers.roi_align")
    batch, height, width, channels = tf.unstack(image_shape)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    top, bottom, y_weight, y_inside = module._crop_taps(y1, y2, crop_h, height)
    left, right, x_weight, x_inside = module._crop_taps(x1, x2, crop_w, width)
    y_inside, x_inside = tf.cast(y_inside, tf.float32), tf.cast(x_inside, tf.float32)
    first_row = tf.cast(box_indices, tf.int32)[:, None] * height
    columns, values = [], []
    for rows, row_weight in ((top, (1 - y_weight) * y_inside), (bottom, y_weight * y_inside)):
        for cols, col_weight in ((left, (1 - x_weight) * x_inside), (right, x_weight * x_inside)):
            index = (first_row + rows)[:, :, None] * width + cols[:, None, :]
            columns.append(tf.reshape(index, [-1]))
            values.append(tf.reshape(row_weight[:, :, None] * col_weight[:, None, :], [-1]))
    samples = tf.shape(columns[0])[0]
    indices = tf.stack([tf.tile(tf.range(samples), [4]), tf.concat(columns, 0)], 1)
    weights = tf.SparseTensor(
        tf.cast(indices, tf.int64),
        tf.concat(values, 0),
        tf.cast(tf.stack([samples, batch * height * width]), tf.int64),
    )
    gradient = tf.sparse.sparse_dense_matmul(
        weights, tf.reshape(upstream, [-1, channels]), adjoint_a=True
    )
    return tf.reshape(gradient, image_shape)


def recipes(quick, folder):
    """`(task, train(deterministic, output))` of each task's recipe at a
    small size."""
    from keras_segattn.recipes.captioning import train_captioner
    from keras_segattn.recipes.instance import train_instances
    from keras_segattn.recipes.semantic import train_segmenter
    from keras_segattn.recipes.stn import train_cell

    epochs = 3 if quick else 5
    images = 16 if quick else 64
    mnist = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    return [
        (
            "semantic: `fcn8s` width 0.25, 64 shapes at 96x96, batch 8",
            lambda det, out: train_segmenter(
                model="fcn8s",
                data="shapes",
                num_images=images,
                image_size=96,
                width=0.25,
                batch_size=8,
                epochs=epochs,
                output=out,
                verbose=0,
                deterministic=det,
            ),
        ),
        (
            "instance: `mnc`, 64 shapes at 64x64",
            lambda det, out: train_instances(
                model="mnc",
                data="shapes",
                num_train=images,
                num_val=8,
                epochs=epochs,
                output=out,
                verbose=0,
                deterministic=det,
            ),
        ),
        (
            "captioning: `show_attend_tell`, 64 shapes",
            lambda det, out: train_captioner(
                data="shapes",
                num_images=images,
                epochs=epochs,
                batch_size=16,
                output=out,
                verbose=0,
                deterministic=det,
            ),
        ),
        (
            "classification: ST-CNN affine, 2,048 RTS digits, batch 128",
            lambda det, out: train_cell(
                "st_cnn:affine",
                "RTS",
                epochs=epochs,
                limit=256 if quick else 2048,
                output=out,
                source=mnist,
                verbose=0,
                deterministic=det,
            ),
        ),
    ]


def epoch_seconds(folder):
    import csv

    with open(os.path.join(folder, "history.csv"), newline="") as f:
        return [float(r["epoch_seconds"]) for r in csv.DictReader(f)][1:]


def recipe_rows(quick, sittings):
    rows = [
        "| recipe | seconds an epoch | with `--deterministic` | ratio |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for what, train in recipes(quick, folder):
            times = {False: [], True: []}
            for sitting in range(sittings):
                for det in (False, True):
                    out = os.path.join(folder, f"{len(rows)}-{sitting}-{det}")
                    train(det, out)
                    found = [
                        os.path.join(root)
                        for root, _, files in os.walk(out)
                        if "history.csv" in files
                    ]
                    times[det] += epoch_seconds(found[0])
            plain, det = np.median(times[False]), np.median(times[True])
            rows.append(f"| {what} | {plain:.2f} | {det:.2f} | {det / plain:.2f} |")
            print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    lines = [f"Machine: {machine()}; medians, side by side in one process.", ""]
    lines += roi_align_rows(args.quick, 3 if args.quick else 7)
    lines += ["", "Time per training epoch (epochs after the first):", ""]
    lines += recipe_rows(args.quick, 1 if args.quick else 2)
    report(lines, "determinism.md", args.quick)


if __name__ == "__main__":
    main()
