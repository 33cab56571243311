"""What TFLite quantisation costs: file size, latency and task accuracy.

    python benchmarks/quantization.py \
        --segmenter runs/fcn8s_shapes/best.keras \
        --classifier runs/stn/st_cnn_affine_RTS/last.keras \
        --captioner runs/caption_shapes_soft_8x8/best.keras
    python benchmarks/quantization.py --quick ...   # a few images, a smoke run

For each trained model given, the Keras model (TensorFlow, float32) and its
TFLite files in the four quantisations of `convert_to_tflite` (`float32`;
`float16` weights; `dynamic`: int8 weights, float activations; `int8`:
full-integer, calibrated on 32 training examples), all scored on the same
held-out examples:

- segmenter: mean IoU on the validation split of its run's data (at the
  run's image size), from the `class_map` output;
- classifier: % error on distorted MNIST test digits (the distortion of its
  input size: RTS for 42x42, R for 28x28), from `probabilities`;
- captioner: BLEU-4 of greedy captions (the TFLite `tokens` signature) on
  the shapes test split;
- detector (`rpn`, `mnc`): COCO mask mAP^r at IoU 0.5 on the validation
  split of its run's data (at the run's image size), from the whole
  detector's outputs (`boxes`, `scores`, `classes`, `masks`).

`--segmenter` takes several models; `--keep` keeps the rows of the models
not measured this time in `benchmarks/quantization.md`.

Latency: one image, median of 9 runs after a warm-up, TFLite with 2
threads (XNNPACK where it takes the ops), TensorFlow with its defaults.
"""

import argparse
import os
import tempfile
import time

import numpy as np
from timing import machine, median_seconds, report

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def as_numpy(serve):
    """A serving function, traced once (a graph, as a server runs it),
    returning NumPy arrays as the TFLite runner does."""
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow

    traced = tf.function(in_tensorflow(serve), reduce_retracing=True)
    return lambda images: {k: v.numpy() for k, v in traced(images).items()}


def benchmark_task(name, metric, model, task, calibration, held_out, score):
    """What `measure` needs of one model: its serving function (a
    captioner's TFLite-ready `tokens` one), a sample, the scorer."""
    from keras_segattn.tasks import get_task

    signature = get_task(task).tflite_signature  # a captioner's numeric "tokens"
    serve = get_task(task).serving_function(model, signature)
    return dict(
        name=name,
        metric=metric,
        model=model,
        task=task,
        calibration=calibration,
        signature=signature,
        sample=held_out[0][0],
        score=score,
        keras=as_numpy(serve),
    )


def segmenter_task(model_path, count):
    from keras_segattn.checkpoints import load_model, read_run_config
    from keras_segattn.data import load_segmentation_dataset, segmentation_pipeline

    model = load_model(model_path)
    run = read_run_config(model_path)
    data, info = load_segmentation_dataset(run.get("data", "shapes"), "val")
    size = run.get("image_size")
    batches = segmentation_pipeline(
        data.take(count + 32), 1, info.num_classes, info.ignore_class, image_size=size
    )
    examples = [(x.numpy(), y.numpy()) for x, y in batches]
    calibration, held_out = [x for x, _ in examples[:32]], examples[32:]

    def score(predict):
        confusion = np.zeros((info.num_classes, info.num_classes), np.int64)
        for images, masks in held_out:
            predicted = predict(images)["class_map"].ravel()
            truth = masks.ravel()
            keep = truth != info.ignore_class
            confusion += np.bincount(
                truth[keep] * info.num_classes + predicted[keep], minlength=info.num_classes**2
            ).reshape(confusion.shape)
        union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
        present = union > 0
        return float(np.mean(np.diag(confusion)[present] / union[present]))

    name = f"{model.name} ({run.get('data', 'shapes')})"
    return benchmark_task(name, "mean IoU", model, "semantic", calibration, held_out, score)


def classifier_task(model_path, count):
    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import distorted_mnist, load_mnist

    model = load_model(model_path)
    size = model.input.shape[1]
    distortion = "RTS" if size == 42 else "R"
    mnist = os.path.join(SHARED, "mnist")

    def digits(split, n):
        source = tuple(a[:n] for a in load_mnist(mnist, split))
        data = distorted_mnist(split, distortion, seed=0, source=source)
        return [(np.round(x.numpy()[None] * 255).astype(np.uint8), int(y)) for x, y in data]

    calibration = [x for x, _ in digits("train", 32)]
    held_out = digits("test", count)

    def score(predict):
        wrong = [np.argmax(predict(x)["probabilities"][0]) != y for x, y in held_out]
        return 100.0 * float(np.mean(wrong))

    name = f"{model.name} ({distortion} MNIST)"
    return benchmark_task(name, "% error", model, "classification", calibration, held_out, score)


def captioner_task(model_path, count):
    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import load_caption_dataset
    from keras_segattn.evaluation.captioning import score_captions
    from keras_segattn.export.flow import resize_uint8

    model = load_model(model_path)
    size = tuple(model.image_size)

    def examples(split, n):
        data, _ = load_caption_dataset("shapes", split, num_images=n, image_size=size[0])
        return [
            (resize_uint8(e["images"], size)[None], [c.decode() for c in e["captions"].numpy()])
            for e in data
        ]

    calibration = [x for x, _ in examples("train", 32)]
    held_out = examples("test", count)

    def score(predict):
        references, candidates = {}, {}
        for i, (images, captions) in enumerate(held_out):
            references[i] = captions
            candidates[i] = " ".join(model.decode_tokens(predict(images)["token_ids"][0]))
        return score_captions(references, candidates, metrics=("BLEU",))["BLEU-4"]

    name = f"{model.name} (shapes)"
    return benchmark_task(name, "BLEU-4", model, "captioning", calibration, held_out, score)


def detector_task(model_path, count):
    from keras_segattn.checkpoints import load_model, read_run_config
    from keras_segattn.data import load_instance_dataset
    from keras_segattn.evaluation.instance import coco_scores

    model = load_model(model_path)
    run = read_run_config(model_path)
    spec, size = run.get("data", "shapes"), run.get("image_size", 64)
    options = {"image_size": size} if spec == "shapes" else {}
    train, info = load_instance_dataset(spec, "train", **options)
    held_out_data, _ = load_instance_dataset(spec, "val", **options)
    held_out_data = held_out_data.take(count)
    calibration = [e["images"].numpy()[None] for e in train.take(32)]
    examples = [(e["images"].numpy()[None], int(e["image_id"])) for e in held_out_data]

    def score(predict):
        predictions = []
        for images, image_id in examples:
            out = predict(images)
            n = int(out["num_detections"][0])
            predictions.append(
                {
                    "image_id": image_id,
                    "boxes": out["boxes"][0, :n],
                    "scores": out["scores"][0, :n],
                    "labels": out["classes"][0, :n],
                    "masks": out["masks"][0, :n],
                }
            )
        return coco_scores(predictions, held_out_data, info.num_classes)["mAPr@0.5"]

    name = f"{model.name} ({spec})"
    return benchmark_task(name, "mAP^r@0.5", model, "instance", calibration, examples, score)


def kept_rows(measured):
    """The table rows of `benchmarks/quantization.md` whose model is not
    among `measured` (names), for `--keep`."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quantization.md")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.rstrip("\n") for line in f if line.startswith("| ") and "---" not in line]
    return [row for row in rows[1:] if row.split(" | ")[0][2:] not in measured]


def measure(task, repeats):
    from keras_segattn.export import convert_to_tflite
    from keras_segattn.export.tflite import tflite_runner

    rows = []
    sample = task["sample"]
    keras_seconds = median_seconds(lambda: task["keras"](sample), repeats)
    rows.append(("Keras (TensorFlow, float32)", None, keras_seconds, task["score"](task["keras"])))
    for quantization in QUANTIZATIONS:
        start = time.perf_counter()
        flatbuffer = convert_to_tflite(
            task["model"],
            quantization=quantization,
            task=task["task"],
            signature_key=task["signature"],
            representative_images=task["calibration"],
        )
        print(f"  {quantization}: converted in {time.perf_counter() - start:.0f} s", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
            f.write(flatbuffer)
            f.flush()
            runner = tflite_runner(f.name, task["signature"], num_threads=2)

            def predict(images, runner=runner):
                return runner(images=images)

            seconds = median_seconds(lambda: predict(sample), repeats)
            score = task["score"](predict)
            rows.append((f"TFLite {quantization}", len(flatbuffer), seconds, score))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--segmenter", nargs="+", default=(), help="semantic models' .keras (their run.json's data)"
    )
    parser.add_argument("--classifier", help="an MNIST classifier's .keras")
    parser.add_argument("--captioner", help="a shapes captioner's .keras")
    parser.add_argument("--detector", help="an rpn or mnc .keras (its run.json's data)")
    parser.add_argument("--keep", action="store_true", help="keep the other models' rows")
    parser.add_argument("--images", type=int, default=300, help="held-out examples per model")
    parser.add_argument("--quick", action="store_true", help="8 examples, 3 timing runs")
    args = parser.parse_args()
    count, repeats = (8, 3) if args.quick else (args.images, 9)
    builders = [
        *((path, segmenter_task) for path in args.segmenter),
        (args.classifier, classifier_task),
        (args.captioner, captioner_task),
        (args.detector, detector_task),
    ]
    lines = [
        f"Machine: {machine()}. One image per run, median of {repeats}; "
        f"{count} held-out examples per model.",
        "",
        "| model | runtime | file size | latency | accuracy |",
        "|---|---|---|---|---|",
    ]
    measured = []
    for path, builder in builders:
        if not path:
            continue
        task = builder(path, count)
        measured.append(task["name"])
        print(f"{task['name']}:", flush=True)
        for runtime, size, seconds, score in measure(task, repeats):
            size = "" if size is None else f"{size / 1e6:.2f} MB"
            lines.append(
                f"| {task['name']} | {runtime} | {size} | {seconds * 1000:.1f} ms | "
                f"{task['metric']} {score:.3f} |"
            )
            print(lines[-1], flush=True)
    if args.keep:
        lines[4:4] = kept_rows(measured)
    report(lines, "quantization.md", args.quick)


if __name__ == "__main__":
    main()
