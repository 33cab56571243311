"""Inference time per image of the instance-segmentation models.

    python benchmarks/instance.py            # the README table (about 5 min on 2 cores)
    python benchmarks/instance.py --quick    # a smoke run

One image per call, random weights (the work does not depend on what the
weights say: MNC always scores its fixed number of proposals and pastes
its padded detections; SDS always scores every proposal), medians after a
warm-up. Rows:

- `mnc`, the COCO-slice configuration (`COCO_LIGHT_MNC`: light backbone,
  fc layers of 512, 81 classes, 50 detections), Keras `detect` (a
  `tf.function`) and the exported builtin TFLite model, at 256x256 and at
  a COCO-sized 480x640;
- `mnc` with the paper's VGG16 backbone (width 1.0, 21 classes), Keras,
  at 480x640 (the MNC paper: 360 ms per image on a K40 GPU);
- `sds`: the selective-search region proposals (host, scikit-image) and
  the network + NMS + superpixel refinement on them, at 256x256;
- `hypercolumns`: 10 boxes segmented (`segment_boxes`) at 256x256.

Prints a Markdown table.
"""

import argparse
import os
import tempfile

import numpy as np
from timing import machine, median_seconds


def mnc_row(size, repeats, tflite=True, **kwargs):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_segattn.core.kernels import in_tensorflow
    from keras_segattn.export import convert_to_tflite
    from keras_segattn.models import create_model

    model = create_model("mnc", **kwargs)
    image = np.random.default_rng(0).integers(0, 256, (1, *size, 3), np.uint8)
    detect = tf.function(in_tensorflow(model.detect))
    keras_ms = 1000 * median_seconds(lambda: detect(image)["masks"].numpy(), repeats)
    tflite_ms = None
    if tflite:
        with tempfile.TemporaryDirectory() as directory:
            tflite_path = os.path.join(directory, "mnc.tflite")
            convert_to_tflite(model, tflite_path, task="instance")
            interpreter = Interpreter(model_path=tflite_path, num_threads=os.cpu_count())
            runner = interpreter.get_signature_runner()
            tflite_ms = 1000 * median_seconds(lambda: runner(images=image), repeats)
    return keras_ms, tflite_ms, model.count_params() / 1e6


def sds_row(size, repeats):
    from keras_segattn.models import create_model
    from keras_segattn.models.instance.regions import propose_regions
    from keras_segattn.models.instance.sds import sds_detect

    model = create_model("sds", num_classes=81, width=0.125, fc_units=64, crop_size=32)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), np.uint8)
    # A smooth random image gives Felzenszwalb segments like a photo's.
    image = np.cumsum(np.cumsum(image.astype(np.float32) - 127.5, 0), 1)
    image = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    proposals = propose_regions(image)
    proposals_ms = 1000 * median_seconds(lambda: propose_regions(image), repeats)
    network_ms = 1000 * median_seconds(
        lambda: sds_detect(model, image, proposals=proposals), repeats
    )
    return proposals_ms, network_ms, len(proposals[0]), model.count_params() / 1e6


def hypercolumns_row(size, repeats, num_boxes=10):
    from keras_segattn.models import create_model
    from keras_segattn.models.instance.hypercolumns import segment_boxes

    model = create_model("hypercolumns", num_classes=81, width=0.25, fc_units=64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*size, 3), np.uint8)
    corners = rng.uniform(0, 0.5, (num_boxes, 2)) * size[::-1]
    boxes = np.concatenate([corners, corners + 0.4 * np.array(size[::-1])], 1)
    classes = rng.integers(1, 81, num_boxes)
    ms = 1000 * median_seconds(lambda: segment_boxes(model, image, boxes, classes), repeats)
    return ms, model.count_params() / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    small, large = ((64, 64), (96, 128)) if args.quick else ((256, 256), (480, 640))
    from keras_segattn.models.instance import COCO_LIGHT_MNC

    coco = {**COCO_LIGHT_MNC, "num_classes": 81}

    def fmt(value):
        return "-" if value is None else f"{value:.0f}"

    rows = []
    for size in (small, large):
        keras_ms, tflite_ms, params = mnc_row(size, repeats, **coco)
        rows.append(
            f"| `mnc`, light backbone | {size[0]}x{size[1]} | {params:.1f} | "
            f"{fmt(keras_ms)} | {fmt(tflite_ms)} | |"
        )
        print(rows[-1], flush=True)
    keras_ms, _, params = mnc_row(
        large, max(1, repeats - 2), tflite=False, num_classes=21, width=0.25 if args.quick else 1.0
    )
    rows.append(
        f"| `mnc`, VGG16 backbone (the paper's) | {large[0]}x{large[1]} | {params:.1f} | "
        f"{fmt(keras_ms)} | - | MNC paper: 360 ms on a K40 GPU |"
    )
    print(rows[-1], flush=True)
    proposals_ms, network_ms, count, params = sds_row(small, repeats)
    rows.append(
        f"| `sds` | {small[0]}x{small[1]} | {params:.1f} | "
        f"{fmt(proposals_ms + network_ms)} | - | {fmt(proposals_ms)} ms of it the "
        f"{count} region proposals (scikit-image, host) |"
    )
    print(rows[-1], flush=True)
    ms, params = hypercolumns_row(small, repeats)
    rows.append(
        f"| `hypercolumns`, 10 given boxes | {small[0]}x{small[1]} | {params:.1f} | "
        f"{fmt(ms)} | - | |"
    )
    header = [
        f"Machine: {machine()}. One image per call, medians of {repeats} after a warm-up.",
        "",
        "| model | image | params (M) | Keras (ms per image) | TFLite (ms per image) | note |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
