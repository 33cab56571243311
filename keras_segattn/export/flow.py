"""Export and verify a trained checkpoint: what `segattn export` runs.

`export_checkpoint` loads a `.keras` file, writes the SavedModel in the TF
Serving layout with the signatures of its task (`keras_segattn.tasks`),
converts it to TFLite, and checks every artifact against Keras on a few
real images of the data it was trained on.
"""

import json
import os
import shutil

import numpy as np

from keras_segattn.checkpoints import load_model, read_run_config, run_config_path
from keras_segattn.core.images import resize_image_uint8
from keras_segattn.core.precision import float32_model
from keras_segattn.core.saving import FolderLock, crash_point, write_text
from keras_segattn.core.validation import check_size, optional_size
from keras_segattn.export.onnx import convert_to_onnx
from keras_segattn.export.saved_model import (
    DEFAULT_MAX_BATCH_PIXELS,
    DEFAULT_MAX_PIXELS,
    ServingLimits,
    publish,
    stage_saved_model,
    version_path,
    write_labels,
)
from keras_segattn.export.tflite import convert_to_tflite
from keras_segattn.export.verify import verify_export
from keras_segattn.tasks import get_task, task_of

# Largest difference from Keras accepted for a float32 export (probabilities,
# and the fraction of differing class ids).
EXPORT_TOLERANCE = 1e-3


def resize_uint8(image, size):
    """Resizes one uint8 image (bilinear, rounded back to uint8), as NumPy."""
    return resize_image_uint8(image, size).numpy()


def sample_inputs(model, task, data_spec, image_size, count=32):
    """`count` batches of one example each, as the serving signature of
    `task` takes them (`{input name: array}`), for calibration and checks
    (`Task.sample_inputs`)."""
    return get_task(task).sample_inputs(model, data_spec, image_size, count)


def fixed_size_inputs(inputs, size):
    """`inputs` with their images resized to `size` (boxes scaled with them)."""
    if "images" not in inputs:
        return inputs  # crops: their size is the network's
    images = inputs["images"]
    resized = {**inputs, "images": resize_uint8(images[0], size)[None]}
    if "boxes" in inputs:
        scale = np.array([size[1] / images.shape[2], size[0] / images.shape[1]] * 2, np.float32)
        resized["boxes"] = inputs["boxes"] * scale
    return resized


def export_checkpoint(
    model_path,
    output="saved_models",
    name=None,
    version=1,
    tflite=("float32",),
    data=None,
    tflite_size=None,
    keras_file=False,
    log=print,
    max_pixels=None,
    max_batch_pixels=None,
    onnx=False,
):
    """Exports a checkpoint to a SavedModel and TFLite files, verified.

    Args:
        model_path: str. A `.keras` file saved by the package.
        output: str. The TF Serving base folder.
        name: str or `None`. The model's folder; defaults to the run's model
            name (`run.json`) or the model's.
        version: int. The TF Serving version.
        tflite: iterable of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        data: str or `None`. Images for int8 calibration and the parity
            check: a dataset spec (default: the run's training data) or an
            MNIST source.
        tflite_size: `(height, width)` or `None`. Also write each TFLite
            file at this fixed image size (`..._<H>x<W>[_<q>].tflite`),
            checked against Keras at that size: TFLite's XNNPACK delegate
            runs the whole of a fixed-size graph (`docs/export.md`, "Which TFLite file
            to ship"). Defaults to `None`.
        keras_file: bool. Also write the Keras model, without its optimizer
            state, as `<name>_v<version>.keras`, with the run's arguments
            beside it (`<name>_v<version>.run.json`, which `read_run_config`
            finds): what `segattn predict`, `caption` and `evaluate` load,
            so that the model folder is all a user needs. Defaults to
            `False`.
        log: callable taking one str. Defaults to `print`.
        max_pixels: int or `None`. The most pixels (height x width) of one
            image the signatures serve (`ServingLimits`; default 2048 x
            2048). Larger images are refused by their index before they
            are decoded.
        max_batch_pixels: int or `None`. The most pixels of one request,
            its images padded to the largest (default twice
            `max_pixels`' default). Both are recorded in the TFLite files'
            metadata (`tflite_serving_limits`) for an app to apply.
        onnx: bool. Also write `<name>_v<version>.onnx`
            (`convert_to_onnx`: the TFLite file's signature through
            tf2onnx, labels and limits in its `metadata_props`), verified
            in onnxruntime like the others. Defaults to `False`.

    The SavedModel is written to a hidden staging folder and the TFLite
    files to staging names, all verified against Keras, and only then
    published: the version folder appears in one rename, the TFLite files
    (`<name>_v<version>[_<H>x<W>][_<quantization>].tflite`, so versions
    never overwrite each other) in one `os.replace` each. A failed check,
    or a kill, publishes nothing. The labels (class names, or a
    captioner's vocabulary, by id) travel with every artifact: in the
    SavedModel's `assets.extra/labels.txt`, embedded in each TFLite file
    (`tflite_labels`) and beside them as `<name>_v<version>.labels.txt`.
    The SavedModel calls TensorFlow's fused
    kernels; the TFLite files are traced from the Keras model with the
    builtin formulations (`convert_to_tflite`).

    Returns:
        `(saved_model_path, report)`: `report` maps each artifact to its
        largest differences from Keras, and `"tflite_files"` to the
        published TFLite paths by quantization (`"float32"`, ...; fixed-size
        files by `"<H>x<W>_<quantization>"`), `"labels_file"` to the labels
        beside them.

    Raises:
        ValueError: if a float32 artifact differs from Keras by more than
            `EXPORT_TOLERANCE` (nothing is published), an existing version,
            or a bad checkpoint.
    """
    # A mixed-precision checkpoint is exported computing in float32.
    loaded = load_model(model_path, "model_path")  # uncompiled: no optimizer state
    run = read_run_config(model_path)
    # As its task serves it: a patch classifier as a dense labeller, SDS's
    # and Hypercolumns' networks alone.
    model, task = task_of(loaded).serving_model(float32_model(loaded))
    name = name or run.get("model") or model.name
    if tflite_size is not None:  # refused now, before anything is written
        tflite_size = check_size(tflite_size, "tflite_size")
        task.input_signature(model, tflite_size)
    limits = ServingLimits(
        DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        DEFAULT_MAX_BATCH_PIXELS if max_batch_pixels is None else max_batch_pixels,
    )
    # One export at a time into a model's folder (the version picked, staged
    # and published under the lock).
    with FolderLock(os.path.join(output, name), "export folder"):
        return _export_version(
            loaded,
            run,
            model,
            task,
            output,
            name,
            version,
            tflite,
            data,
            tflite_size,
            keras_file,
            log,
            limits,
            onnx,
        )


def _export_version(
    loaded,
    run,
    model,
    task,
    output,
    name,
    version,
    tflite,
    data,
    tflite_size,
    keras_file,
    log,
    limits,
    onnx,
):
    """`export_checkpoint` once it holds the model's folder."""
    path = version_path(output, name, version)
    data_spec = data or run.get("data")
    examples = task.sample_inputs(
        model, data_spec, optional_size(run.get("image_size"), "image_size of run.json")
    )
    serve = task.serving_functions(model)["serving_default"]
    reference = {k: v.numpy() for k, v in serve(**examples[0]).items()}
    # Everything is written to staging names, verified, and only then published.
    labels = task.labels(model, data_spec, run)
    staging = stage_saved_model(model, path, task, labels, limits)
    staged_tflite = f"{staging}-tflite"  # removed with it if a later export finds it stale
    try:
        os.makedirs(staged_tflite, exist_ok=True)  # every file published beside the SavedModel
        report = verify_export(reference, examples[0], saved_model_dir=staging)
        log_parity(report, log)
        if max(report["saved_model"].values()) > EXPORT_TOLERANCE:
            raise ValueError(f"the SavedModel differs from Keras: {report['saved_model']}")
        files = {}
        signature = task.tflite_signature  # numeric outputs only (a captioner's tokens)
        # (size, images, Keras outputs): any size, and the fixed one if asked.
        variants = [(None, examples, reference)]
        if tflite_size is not None:
            fixed = [fixed_size_inputs(inputs, tflite_size) for inputs in examples]
            outputs = {k: v.numpy() for k, v in serve(**fixed[0]).items()}
            variants.append((tflite_size, fixed, outputs))
        for quantization in tflite:
            for size, inputs, expected in variants:
                key = quantization if size is None else f"{size[0]}x{size[1]}_{quantization}"
                suffix = "" if size is None else f"_{size[0]}x{size[1]}"
                suffix += "" if quantization == "float32" else f"_{quantization}"
                final = os.path.join(output, name, f"{name}_v{version}{suffix}.tflite")
                staged = os.path.join(staged_tflite, os.path.basename(final))
                convert_to_tflite(
                    model,
                    staged,
                    quantization,
                    representative_images=inputs,
                    signature_key=signature,
                    task=task,
                    input_size=size,
                    labels=labels,
                    limits=limits,
                )
                check = verify_export(expected, inputs[0], tflite_model=staged)["tflite"]
                report[f"tflite_{key}"] = check
                log(f"TFLite {key}: {final} ({os.path.getsize(staged) / 1e6:.1f} MB)")
                log_parity({"tflite": check}, log)
                if quantization == "float32" and max(check.values()) > EXPORT_TOLERANCE:
                    raise ValueError(
                        f"the float32 TFLite model differs from Keras by "
                        f"{max(check.values()):.2e} (> {EXPORT_TOLERANCE}); nothing was published."
                    )
                files[key] = (staged, final)
        if onnx:
            final = os.path.join(output, name, f"{name}_v{version}.onnx")
            staged = os.path.join(staged_tflite, os.path.basename(final))
            convert_to_onnx(model, staged, task, signature, labels, limits)
            check = verify_export(reference, examples[0], onnx_model=staged)["onnx"]
            report["onnx"] = check
            log(f"ONNX: {final} ({os.path.getsize(staged) / 1e6:.1f} MB)")
            log_parity({"onnx": check}, log)
            if max(check.values()) > EXPORT_TOLERANCE:
                raise ValueError(
                    f"the ONNX model differs from Keras by {max(check.values()):.2e} "
                    f"(> {EXPORT_TOLERANCE}); nothing was published."
                )
            files["onnx"] = (staged, final)
        extras = {}  # the other files published beside the TFLite ones
        if files:  # the labels beside the TFLite files too, for an app's assets
            final = os.path.join(output, name, f"{name}_v{version}.labels.txt")
            staged = os.path.join(staged_tflite, os.path.basename(final))
            write_labels(staged, labels)
            extras["labels"] = (staged, final)
        if keras_file:
            final = os.path.join(output, name, f"{name}_v{version}.keras")
            staged = os.path.join(staged_tflite, os.path.basename(final))
            loaded.save(staged)
            extras["keras"] = (staged, final)
            if run:
                staged_run = os.path.join(staged_tflite, f"{name}_v{version}.run.json")
                write_text(staged_run, json.dumps(run, indent=2))
                extras["run"] = (staged_run, run_config_path(final))
        crash_point("publish")  # verified, nothing published yet
        publish(staging, path)
        for staged, final in [*files.values(), *extras.values()]:
            os.replace(staged, final)
    finally:
        for leftover in (staging, staged_tflite):
            shutil.rmtree(leftover, ignore_errors=True)
    log(f"SavedModel (TF Serving layout): {path}")
    log(f"serves {limits.max_pixels:,} pixels an image, {limits.max_batch_pixels:,} a request")
    report["labels_file"] = extras.get("labels", (None, None))[1]
    report["keras_file"] = extras.get("keras", (None, None))[1]
    report["onnx_file"] = files.pop("onnx", (None, None))[1]
    report["tflite_files"] = {q: final for q, (_, final) in files.items()}
    return path, report


def log_parity(report, log=print):
    for artifact, diffs in report.items():
        log(f"  {artifact} vs Keras: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
