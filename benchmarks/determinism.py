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

    def racing(x):
        # The same fused forward, TensorFlow's own gradient.
        module = importlib.import_module("keras_segattn.layers.roi_align")

        original = module.crop_and_resize
        module.crop_and_resize = lambda i, b, n, s: tf.image.crop_and_resize(i, b, n, s)
        try:
            return roi_align(x, boxes, 14, 2, 1 / 16)
        finally:
            module.crop_and_resize = original

    fused = tf.function(in_tensorflow(lambda: step(ours)))
    theirs = tf.function(in_tensorflow(lambda: step(racing)))
    with tflite_builtins_only():
        gathers = tf.function(lambda: step(ours)).get_concrete_function()
    t = side_by_side([fused, theirs, gathers], repeats)
    what = f"`roi_align` forward + backward, 2 x {num_boxes} boxes, 14x14, {channels} channels"
    return [
        "| what | ours (ms) | the alternative | its time (ms) | ratio |",
        "|---|---|---|---|---|",
        f"| {what} | {t[0]:.1f} | TensorFlow's gradient (races) | {t[1]:.1f} | {t[0] / t[1]:.2f} |",
        f"|   the same | {t[0]:.1f} | the gather formulation's gradient | {t[2]:.1f} | "
        f"{t[0] / t[2]:.2f} |",
    ]


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
        ("semantic: `fcn8s` width 0.25, 64 shapes at 96x96, batch 8",
         lambda det, out: train_segmenter(
             model="fcn8s", data="shapes", num_images=images, image_size=96, width=0.25,
             batch_size=8, epochs=epochs, output=out, verbose=0, deterministic=det)),
        ("instance: `mnc`, 64 shapes at 64x64",
         lambda det, out: train_instances(
             model="mnc", data="shapes", num_train=images, num_val=8, epochs=epochs,
             output=out, verbose=0, deterministic=det)),
        ("captioning: `show_attend_tell`, 64 shapes",
         lambda det, out: train_captioner(
             data="shapes", num_images=images, epochs=epochs, batch_size=16, output=out,
             verbose=0, deterministic=det)),
        ("classification: ST-CNN affine, 2,048 RTS digits, batch 128",
         lambda det, out: train_cell(
             "st_cnn:affine", "RTS", epochs=epochs, limit=256 if quick else 2048, output=out,
             source=mnist, verbose=0, deterministic=det)),
    ]  # fmt: skip


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
                        os.path.join(root) for root, _, files in os.walk(out)
                        if "history.csv" in files
                    ]  # fmt: skip
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
