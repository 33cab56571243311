"""The main job: a light FCN-8s trained, evaluated and exported on built-in data.

Run it with `make demo` or `segattn demo`. Nothing is downloaded: the data
are the package's procedural shapes.
"""

import os

import numpy as np

from keras_segattn.checkpoints import load_model
from keras_segattn.data.pipeline import load_segmentation_dataset
from keras_segattn.evaluation.predictors import predict_scores
from keras_segattn.export.flow import export_checkpoint
from keras_segattn.recipes.semantic import train_segmenter
from keras_segattn.viz import label_palette, save_panels

DEMO_MODEL = "fcn8s"
DEMO_NAME = "fcn8s_shapes"


def next_version(base):
    """The first unused TF Serving version number under `base`."""
    if not os.path.isdir(base):
        return 1
    versions = [int(v) for v in os.listdir(base) if v.isdigit()]
    return max(versions, default=0) + 1


def run_demo(output="saved_models", run_dir=None, quick=False):
    """Trains, evaluates, exports and draws; returns a dict of what went where."""
    # A quick run has other arguments than a full one: its own run folder.
    run_dir = run_dir or ("runs/demo_quick" if quick else "runs/demo")
    epochs, num_images = (1, 64) if quick else (12, 1000)
    summary = train_segmenter(
        DEMO_MODEL,
        "shapes",
        run_dir,
        epochs=epochs,
        batch_size=16,
        width=0.25,
        batch_norm=True,
        num_images=num_images,
        verbose=2,
    )

    checkpoint = os.path.join(run_dir, "best.keras")
    if not os.path.exists(checkpoint):  # validation never improved on NaN
        checkpoint = os.path.join(run_dir, "last.keras")
    version = next_version(os.path.join(output, DEMO_NAME))
    saved_model_path, parity = export_checkpoint(
        checkpoint, output, name=DEMO_NAME, version=version, tflite=["float32"]
    )
    model = load_model(checkpoint)
    test, _ = load_segmentation_dataset("shapes", "test", num_images=6)
    test = next(iter(test.batch(6)))
    class_maps = np.argmax(np.asarray(predict_scores(model, test["images"])), axis=-1)
    palette = label_palette(model.output.shape[-1])
    overlays = [
        save_panels(
            os.path.join(run_dir, "overlays", f"test_{i}.png"),
            image,
            class_map,
            palette,
            ground_truth=truth,
        )
        for i, (image, class_map, truth) in enumerate(
            zip(test["images"].numpy(), class_maps, test["segmentation_masks"].numpy())
        )
    ]
    tflite_path = parity["tflite_files"]["float32"]
    print(
        "\n== keras_segattn demo ==\n"
        f"held-out mean IoU ({summary['split']}, 200 images): {summary['mean_iou']:.3f}"
        f"  (pixel accuracy {summary['global_accuracy']:.3f});"
        f" trained {summary['train_seconds']:.0f} s\n"
        f"checkpoints, TensorBoard logs, metrics: {run_dir}/\n"
        f"SavedModel for TF Serving:             {saved_model_path}\n"
        f"TFLite (builtin ops):                  {tflite_path}\n"
        f"overlay PNGs (image | prediction | truth): {os.path.dirname(overlays[0])}/\n"
        f"largest |TFLite - Keras| probability:  {parity['tflite_float32']['probabilities']:.2e}"
    )
    return {
        "summary": summary,
        "saved_model": saved_model_path,
        "tflite": tflite_path,
        "overlays": overlays,
        "parity": parity,
    }
