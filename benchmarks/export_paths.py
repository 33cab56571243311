"""Every export path against Keras, and ONNX Runtime's speed beside
TensorFlow's and TFLite's.

    python benchmarks/export_paths.py           # both tables (about 12 min on 2 cores)
    python benchmarks/export_paths.py --quick   # tiny sizes, a smoke run
    python benchmarks/export_paths.py --parts parity   # the first table only

Parity: every registered model (its `tiny` preset, random weights), on
random inputs, through the package's own exports (`segattn export`: the
SavedModel's `serving_default`, TFLite, `--onnx`; compared with the task's
serving function in Keras) and through the standard tools a Keras user
reaches for (`model.export(format="litert")`, `TFLiteConverter
.from_keras_model` with builtins only, `model.export(format="onnx")`, and
TF's converter on the SavedModel's `portable` signature; compared with
`model(x)`). Each cell is the largest absolute difference of a float output;
integer outputs (class maps, token ids, detections) must be equal, and a
cell that is not says so.

Speed: batch 1, uint8 images in, the same serving function in TensorFlow
(the SavedModel's fused kernels), TFLite (XNNPACK, fixed size) and ONNX
Runtime (CPU), all cores, medians of 7 in turns. Results go to stdout and
to benchmarks/export_paths.md.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from timing import machine, report, side_by_side

IMAGE = 64  # the free image dimensions of the parity inputs


def random_inputs(specs, rng):
    """One batch of 2 for each `tf.TensorSpec`: images uint8, boxes inside
    the image, class ids 1 or 2, other floats in [0, 1)."""
    arrays = {}
    for spec in specs:
        shape = [2, *(IMAGE if d is None else d for d in spec.shape[1:])]
        if spec.name in ("boxes", "classes"):  # three boxes an image
            shape[1] = 3
        if spec.name == "boxes":
            corner = rng.uniform(0, IMAGE / 2, (*shape[:2], 2))
            size = rng.uniform(8, IMAGE / 2, (*shape[:2], 2))
            arrays[spec.name] = np.concatenate([corner, corner + size], -1).astype("float32")
        elif spec.dtype.name == "uint8":
            arrays[spec.name] = rng.integers(0, 256, shape).astype("uint8")
        elif spec.dtype.is_integer:
            arrays[spec.name] = rng.integers(1, 3, shape).astype(spec.dtype.name)
        else:
            arrays[spec.name] = rng.uniform(size=shape).astype("float32")
    return arrays


def largest_difference(actual, expected):
    """The largest float difference, or `"ints differ"`."""
    worst = 0.0
    for a, e in zip(actual, expected):
        a, e = np.asarray(a), np.asarray(e)
        if e.dtype.kind in "OSU":
            continue
        if np.issubdtype(e.dtype, np.integer):
            if a.shape != e.shape or (a != e).any():
                return f"{np.mean(a != e):.1%} of ints differ"
        elif e.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - e))))
    return worst


def by_name(outputs, names):
    return [outputs[n] for n in names]


def by_index(outputs):  # a converted model.export: output_0, output_1, ...
    return [outputs[k] for k in sorted(outputs, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def parity_row(name, directory, rng):
    import keras
    import tensorflow as tf

    from keras_segattn.export import (
        PORTABLE_SIGNATURE_KEY,
        convert_to_onnx,
        convert_to_tflite,
        export_saved_model,
        run_onnx,
        run_tflite,
    )
    from keras_segattn.models import create_model
    from keras_segattn.tasks import task_of
    from keras_segattn.testing import nonzero_weights

    built = create_model(name, preset="tiny")
    built.set_weights(nonzero_weights(built))  # no zero-initialised head: outputs vary
    model, task = task_of(built).serving_model(built)
    signature = task.tflite_signature
    inputs = random_inputs(task.input_signature(model), rng)
    serve = task.serving_functions(model)
    expected = {k: np.asarray(v) for k, v in serve[signature](*inputs.values()).items()}
    names = sorted(k for k, v in expected.items() if v.dtype.kind not in "OSU")
    cells = {}

    def cell(column, compute):
        try:
            cells[column] = compute()
        except Exception as error:  # a path that fails is a result too
            cells[column] = f"fails: {type(error).__name__}"
            print(name, column, error, file=sys.stderr)

    path = export_saved_model(model, directory, name=name, task=task)
    loaded = tf.saved_model.load(path)
    default = {k: np.asarray(v) for k, v in serve["serving_default"](*inputs.values()).items()}

    def saved_model():
        outputs = loaded.signatures["serving_default"](**inputs)
        keys = [k for k in sorted(default) if default[k].dtype.kind not in "OSU"]
        return largest_difference(by_name(outputs, keys), by_name(default, keys))

    cell("SavedModel", saved_model)
    cell(
        "TFLite (segattn)",
        lambda: largest_difference(
            by_name(
                run_tflite(convert_to_tflite(model, task=task, signature_key=signature), inputs),
                names,
            ),
            by_name(expected, names),
        ),
    )
    cell(
        "ONNX (segattn)",
        lambda: largest_difference(
            by_name(run_onnx(convert_to_onnx(model, task=task), inputs), names),
            by_name(expected, names),
        ),
    )

    def from_saved_model():
        converter = tf.lite.TFLiteConverter.from_saved_model(
            path, signature_keys=[PORTABLE_SIGNATURE_KEY]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        outputs = run_tflite(converter.convert(), inputs)
        return largest_difference(by_name(outputs, names), by_name(expected, names))

    cell("TFLite from_saved_model", from_saved_model)

    # The standard tools on the Keras model itself: its own inputs and outputs.
    own = random_inputs(
        [tf.TensorSpec(t.shape, t.dtype, t.name) for t in keras.tree.flatten(built.inputs)], rng
    )
    arrays = list(own.values())
    reference = keras.tree.flatten(built(arrays if len(arrays) > 1 else arrays[0]))

    def litert():
        file = os.path.join(directory, f"{name}.tflite")
        built.export(file, format="litert", verbose=False)
        return largest_difference(by_index(run_tflite(file, own)), reference)

    def from_keras_model():
        converter = tf.lite.TFLiteConverter.from_keras_model(built)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return largest_difference(by_index(run_tflite(converter.convert(), own)), reference)

    def onnx():
        file = os.path.join(directory, f"{name}.onnx")
        built.export(file, format="onnx", verbose=False)
        from keras_segattn.export.onnx import onnx_session

        session = onnx_session(file)
        feed = dict(zip([i.name for i in session.get_inputs()], arrays))
        return largest_difference(session.run(None, feed), reference)

    cell("model.export litert", litert)
    cell("from_keras_model", from_keras_model)
    cell("model.export onnx", onnx)
    return cells


COLUMNS = [
    "SavedModel",
    "TFLite (segattn)",
    "ONNX (segattn)",
    "TFLite from_saved_model",
    "model.export litert",
    "from_keras_model",
    "model.export onnx",
]


def parity_lines():
    from keras_segattn.models import list_models

    rng = np.random.default_rng(0)
    lines = [
        "Largest difference from Keras (float outputs; integer outputs equal unless said), "
        "tiny presets, random weights and inputs:",
        "",
        "| model | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name in list_models():
        with tempfile.TemporaryDirectory() as directory:
            cells = parity_row(name, directory, rng)
        text = [c if isinstance(c, str) else f"{c:.1e}" for c in (cells[k] for k in COLUMNS)]
        lines.append(f"| `{name}` | " + " | ".join(text) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def speed_cases(quick):
    from keras_segattn.models import create_model

    # Width 0.5: tf2onnx ran out of 24 GiB converting FCN-8s at width 1.0
    # (134M parameters); DeconvNet at width 0.5 (224x224, the paper's input)
    # peaks at about 14 GiB in tf2onnx, so it runs with nothing else beside it.
    width = 0.25 if quick else 0.5
    return [
        (
            f"FCN-8s width {width}",
            lambda: create_model("fcn8s", num_classes=11, width=width),
            (64, 64) if quick else (352, 480),
        ),
        (
            f"DeconvNet width {width}",
            lambda: create_model("deconvnet", num_classes=11, width=width),
            (64, 64) if quick else (224, 224),
        ),
        ("ST-CNN (affine)", lambda: create_model("st_cnn"), None),
    ]


def speed_lines(quick, repeats, only=None):
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow
    from keras_segattn.export import convert_to_onnx, convert_to_tflite, tflite_runner
    from keras_segattn.export.onnx import onnx_session
    from keras_segattn.tasks import task_of

    rng = np.random.default_rng(0)
    lines = [
        "Batch 1, uint8 images in, the same serving function; TFLite at a fixed size "
        "(XNNPACK), all cores; medians of 7 in turns:",
        "",
        "| model | TensorFlow (ms) | TFLite (ms) | ONNX Runtime (ms) | TFLite / TF | ORT / TF |",
        "|---|---|---|---|---|---|",
    ]
    for label, build, size in speed_cases(quick):
        if only and only not in label:
            continue
        built = build()
        model, task = task_of(built).serving_model(built)
        size = size or tuple(model.input.shape[1:3])
        images = rng.integers(0, 256, (1, *size, model.input.shape[-1])).astype("uint8")
        serve = task.serving_function(model)
        in_tf = tf.function(in_tensorflow(serve))
        with tempfile.TemporaryDirectory() as directory:
            tflite = os.path.join(directory, "model.tflite")
            convert_to_tflite(model, tflite, task=task, input_size=size)
            runner = tflite_runner(tflite, num_threads=os.cpu_count())
            onnx = os.path.join(directory, "model.onnx")
            convert_to_onnx(model, onnx, task=task)
            session = onnx_session(onnx)
            t = side_by_side(
                [
                    lambda f=in_tf, x=images: f(x),
                    lambda r=runner, x=images: r(images=x),
                    lambda s=session, x=images: s.run(None, {"images": x}),
                ],
                repeats,
            )
        shape = "x".join(str(s) for s in size)
        lines.append(
            f"| {label}, {shape} | {t[0]:.1f} | {t[1]:.1f} | {t[2]:.1f} "
            f"| {t[1] / t[0]:.2f} | {t[2] / t[0]:.2f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--parts", nargs="+", choices=["parity", "speed"], default=["parity", "speed"]
    )
    parser.add_argument("--only", help="speed rows whose label contains this")
    args = parser.parse_args()
    lines = [f"Machine: {machine()}; `python benchmarks/export_paths.py`.", ""]
    if "parity" in args.parts:
        lines += parity_lines() + [""]
    if "speed" in args.parts:
        lines += speed_lines(args.quick, 3 if args.quick else 7, args.only)
    partial = args.quick or args.only or args.parts != ["parity", "speed"]
    report(lines, "export_paths.md", partial)


if __name__ == "__main__":
    main()
