"""Dense labelling with the patch classifier: brute force vs the dense tricks.

    python benchmarks/shift_and_stitch.py              # one 64x64 image
    python benchmarks/shift_and_stitch.py --size 256 --repeats 5

Times one image labelled three ways with the default `patch_cnn` (33x33
patches, stride 4, random weights): every patch cut out and classified
(`brute_force_predict`), the trunk on the 16 shifted copies
(`dense_predict(method="shift_and_stitch")`) and the trunk once with
shifted poolings (`method="shifted_pooling"`). The dense methods run inside
a `tf.function` traced for the image size; brute force calls the Keras model
on batches of patches. Times are medians after one warm-up run; the last
column is the largest difference from brute force. Prints a markdown table.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_segattn.models.semantic import brute_force_predict, dense_predict, patch_cnn  # noqa: E402


def median_seconds(fn, repeats):
    result = fn()  # warm-up: tracing, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2048, help="patches per brute call")
    parser.add_argument("--padding", choices=("reflect", "zero"), default="reflect")
    args = parser.parse_args(argv)

    model = patch_cnn(num_classes=args.num_classes)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(1, args.size, args.size, 3)).astype("float32")
    spec = tf.TensorSpec(images.shape, tf.float32)

    def dense(method):
        fn = tf.function(
            lambda x: dense_predict(model, x, method=method, padding=args.padding),
            input_signature=[spec],
        )
        return lambda: fn(images).numpy()

    methods = {
        "brute force (every patch)": lambda: brute_force_predict(
            model, images, padding=args.padding, batch_size=args.batch_size
        ),
        "shift-and-stitch (16 shifted copies)": dense("shift_and_stitch"),
        "shifted pooling (Pinheiro & Collobert)": dense("shifted_pooling"),
    }
    results = {name: median_seconds(fn, args.repeats) for name, fn in methods.items()}
    reference_seconds, reference = next(iter(results.values()))

    print(
        f"patch_cnn (33x33 patches, stride 4), one {args.size}x{args.size} image, "
        f"padding={args.padding!r}, median of {args.repeats} runs; "
        f"TF {tf.__version__}, {platform.machine()}, {os.cpu_count()} CPU cores\n"
    )
    print("| method | time (ms) | speed-up | max abs diff vs brute force |")
    print("|---|---:|---:|---:|")
    for name, (seconds, output) in results.items():
        diff = float(np.max(np.abs(output - reference)))
        print(f"| {name} | {seconds * 1e3:.1f} | {reference_seconds / seconds:.1f}x | {diff:.2g} |")


if __name__ == "__main__":
    main()
