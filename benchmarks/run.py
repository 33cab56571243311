"""Speed and memory of the semantic models (layers against fused kernels: kernels.py).

    python benchmarks/run.py            # the README table (about 10 min on 2 cores)
    python benchmarks/run.py --quick    # smaller sizes, a smoke run
    python benchmarks/run.py --models recurrent_cnn:0.5   # re-measure some rows

Each model is measured in a fresh subprocess so that its peak resident
memory (ru_maxrss) is its own. Times are medians of several runs after a
warm-up. Results go to stdout and to benchmarks/results.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np
from timing import machine, median_seconds, report

HERE = os.path.dirname(os.path.abspath(__file__))


def measure_model(name, width, height, image_width, batch, repeats):
    """Runs in a subprocess: forward (Keras, TFLite), train step, memory."""
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow
    from keras_segattn.export import convert_to_tflite
    from keras_segattn.models import create_model
    from keras_segattn.recipes.semantic import compile_segmenter

    model = create_model(name, num_classes=11, width=width)
    images = np.random.default_rng(0).integers(0, 256, (1, height, image_width, 3), np.uint8)
    forward = tf.function(in_tensorflow(lambda x: model(x, training=False)))
    keras_ms = 1000 * median_seconds(lambda: forward(images).numpy(), repeats)

    with tempfile.TemporaryDirectory() as directory:
        tflite_path = os.path.join(directory, f"{name}.tflite")
        convert_to_tflite(model, tflite_path, task="semantic")
        tflite_mb = os.path.getsize(tflite_path) / 1e6
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=tflite_path, num_threads=os.cpu_count())
        runner = interpreter.get_signature_runner()
        tflite_ms = 1000 * median_seconds(lambda: runner(images=images), repeats)

    step_s = None
    if width < 1.0:  # a full-width step takes minutes on 2 cores
        compile_segmenter(model, 11, ignore_class=11)
        batch_images = np.repeat(images, batch, axis=0)
        labels = np.random.default_rng(1).integers(0, 11, (batch, height, image_width))
        step_s = median_seconds(lambda: model.train_on_batch(batch_images, labels), repeats)
    return {
        "model": name,
        "width": width,
        "params_m": model.count_params() / 1e6,
        "tflite_mb": tflite_mb,
        "keras_ms": keras_ms,
        "tflite_ms": tflite_ms,
        "train_step_s": step_s,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def previous_rows():
    """The model rows of results.md, as dicts (for a partial re-run)."""
    keys = ["params_m", "tflite_mb", "keras_ms", "tflite_ms", "train_step_s", "peak_rss_gb"]
    rows = []
    path = os.path.join(HERE, "results.md")
    if not os.path.exists(path):
        return rows
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or not cells[1].replace(".", "").isdigit():
            continue
        values = [None if c == "-" else float(c) for c in cells[2:]]
        rows.append({"model": cells[0], "width": float(cells[1]), **dict(zip(keys, values))})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME:WIDTH",
        help="measure only these rows; the other rows of results.md are kept",
    )
    args = parser.parse_args()
    height, width_px, batch, repeats = (64, 96, 2, 2) if args.quick else (360, 480, 4, 5)
    if args.child:
        name, width = args.child.split(":")
        result = measure_model(name, float(width), height, width_px, batch, repeats)
        print(json.dumps(result))
        return

    from keras_segattn.models import list_models

    # Every model light; FCN-8s also at the paper's width (a full-width
    # DeconvNet's 1 GB TFLite file takes minutes to convert on 2 cores).
    runs = [(name, 0.25) for name in list_models(task="semantic")] + [("fcn8s", 1.0)]
    kept = []
    if args.models:
        runs = [(m.split(":")[0], float(m.split(":")[1])) for m in args.models]
        kept = [r for r in previous_rows() if (r["model"], r["width"]) not in runs]
    rows = []
    for name, width in runs:
        output = subprocess.run(
            [sys.executable, __file__, "--child", f"{name}:{width}"]
            + (["--quick"] if args.quick else []),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    rows = sorted(kept + rows, key=lambda r: (r["width"], r["model"]))

    lines = [
        f"Machine: {machine()}. Input {height}x{width_px}; "
        f"forward batch 1, train step batch {batch} (Adam, no XLA); medians of {repeats}.",
        "",
        "| model | width | params (M) | TFLite (MB) | Keras forward (ms) | TFLite forward (ms) "
        "| train step (s) | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['width']} | {r['params_m']:.1f} | {r['tflite_mb']:.1f} "
            f"| {r['keras_ms']:.0f} | {r['tflite_ms']:.0f} "
            f"| {'-' if r['train_step_s'] is None else format(r['train_step_s'], '.2f')} "
            f"| {r['peak_rss_gb']:.1f} |"
        )
    report(lines, "results.md", args.quick)


if __name__ == "__main__":
    main()
