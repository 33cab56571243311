"""The `segattn` command: train, evaluate, predict, export and the demo.

Every subcommand works on any registered model (`segattn models` lists
them) and any dataset spec of `keras_segattn.data.load_segmentation_dataset`
("shapes", "camvid:<root>", "voc:<root>", "tfds:<name>").
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def _model_args(pairs):
    """Parses `KEY=VALUE` builder arguments; values are Python literals or strings."""
    import ast

    parsed = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg expects KEY=VALUE, e.g. instances=3; got {pair!r}.")
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed


def _size(values):
    if values is None:
        return None
    if isinstance(values, int):
        return (values, values)
    return (values[0], values[0]) if len(values) == 1 else tuple(values)


def load_model(path):
    """Loads a `.keras` file saved by `segattn train`, with a clear error."""
    import keras

    import keras_segattn  # noqa: F401  (registers the custom objects)

    if not os.path.isfile(path):
        raise SystemExit(f"error: --model-path {path!r} is not a file.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  (reported, not swallowed)
        raise SystemExit(f"error: could not load --model-path {path!r}: {error}") from error


def read_run_config(model_path):
    """The `run.json` written next to a checkpoint by `segattn train`, if any."""
    directory = os.path.dirname(os.path.abspath(model_path))
    for candidate in (directory, os.path.dirname(directory)):
        path = os.path.join(candidate, "run.json")
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    return {}


def train(args):
    import keras

    from keras_segattn.data import (
        load_segmentation_dataset,
        median_frequency_weights,
        segmentation_pipeline,
    )
    from keras_segattn.evaluation import evaluate_segmentation, format_report
    from keras_segattn.models import create_model, get_model_spec
    from keras_segattn.training import compile_segmenter, object_centred_dataset, two_stage_fit

    if get_model_spec(args.model).task != "semantic":
        raise SystemExit(f"error: segattn train handles semantic models; {args.model} is not.")
    keras.utils.set_random_seed(args.seed)
    image_size, crop_size = _size(args.image_size), _size(args.crop_size)
    train_kwargs = {"num_images": args.num_images} if args.data == "shapes" else {}
    train_data, info = load_segmentation_dataset(args.data, "train", **train_kwargs)
    val_data, _ = load_segmentation_dataset(args.data, args.val_split)
    ignore = info.ignore_class
    pipeline = dict(num_classes=info.num_classes, ignore_class=ignore, image_size=image_size)
    train_batches = segmentation_pipeline(
        train_data, args.batch_size, crop_size=crop_size, augment=args.augment,
        shuffle=1024, seed=args.seed, **pipeline,
    )  # fmt: skip
    val_batches = segmentation_pipeline(val_data, args.batch_size, **pipeline)

    class_weights = None
    if args.class_weights == "median":
        class_weights = median_frequency_weights(train_data, info.num_classes, ignore)
        print("median-frequency class weights:", np.round(class_weights, 3).tolist())

    os.makedirs(args.output, exist_ok=True)
    model = create_model(
        args.model, num_classes=info.num_classes, width=args.width, weights=args.weights,
        **({"batch_norm": True} if args.batch_norm else {}), **_model_args(args.model_arg),
    )  # fmt: skip
    compile_segmenter(model, info.num_classes, ignore, class_weights, args.learning_rate)
    run = {k: v for k, v in vars(args).items() if k != "func"}
    run.update(num_classes=info.num_classes, ignore_class=ignore, class_names=info.class_names)
    with open(os.path.join(args.output, "run.json"), "w") as f:
        json.dump(run, f, indent=2)

    best = os.path.join(args.output, "best.keras")
    backup = os.path.join(args.output, "backup")
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            best, monitor="val_mean_iou", mode="max", save_best_only=True
        ),
        keras.callbacks.TensorBoard(os.path.join(args.output, "logs")),
        # append: a resumed run and the second DeconvNet stage add to the log.
        keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"), append=True),
    ]
    fit_kwargs = dict(validation_data=val_batches, callbacks=callbacks, verbose=args.verbose)
    start = time.time()
    if args.stage1_epochs:
        stage1_source = train_data
        if image_size is not None:
            from keras_segattn.data import resize_example

            stage1_source = train_data.map(lambda e: resize_example(e, image_size))
        stage1 = object_centred_dataset(
            stage1_source, crop_size or image_size, ignore, info.background_class, args.seed
        ).shuffle(1024, seed=args.seed)
        stage1_batches = segmentation_pipeline(
            stage1, args.batch_size, num_classes=info.num_classes, ignore_class=ignore
        )
        two_stage_fit(
            model, stage1_batches, train_batches, args.stage1_epochs, args.epochs,
            backup_dir=backup, **fit_kwargs,
        )  # fmt: skip
    else:
        fit_kwargs["callbacks"].append(keras.callbacks.BackupAndRestore(backup))
        model.fit(train_batches, epochs=args.epochs, **fit_kwargs)
    train_seconds = time.time() - start
    model.save(os.path.join(args.output, "last.keras"))

    best_model = load_model(best) if os.path.exists(best) else model
    report = evaluate_segmentation(
        best_model, load_segmentation_dataset(args.data, args.eval_split)[0],
        info.num_classes, ignore, image_size=image_size,
    )  # fmt: skip
    print(f"\n{args.model} on {args.data} [{args.eval_split}], best checkpoint:")
    print(format_report(report, info.class_names))
    summary = {
        "model": args.model,
        "data": args.data,
        "split": args.eval_split,
        "epochs": args.epochs,
        "image_size": image_size,
        "width": args.width,
        "train_seconds": round(train_seconds, 1),
        "global_accuracy": report["global_accuracy"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "mean_iou": report["mean_iou"],
        "per_class_iou": [None if np.isnan(v) else float(v) for v in report["per_class_iou"]],
    }
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\ntrained in {train_seconds:.0f} s; checkpoints, logs and metrics in {args.output}")
    return summary


def evaluate_instances_cli(args, model, image_size):
    """`segattn evaluate` of an `rpn` / `mnc` checkpoint: COCO scores."""
    from keras_segattn.data import load_instance_dataset, resize_instances
    from keras_segattn.models.instance.train import evaluate_instance_model

    if args.postprocess:
        raise SystemExit("error: --postprocess applies to semantic models only.")
    data, info = load_instance_dataset(args.data, args.split)
    if image_size and args.data != "shapes":  # shapes are generated at their size
        data = resize_instances(data, image_size)
    metrics = evaluate_instance_model(model, data, info.num_classes, args.batch_size)
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP", "box_AP50"):
        print(f"{key:<10} {metrics[key]:.3f}")
    print(f"seconds per image (detect): {metrics['predict_seconds_per_image']:.3f}")
    if args.output:
        summary = {"model_path": args.model_path, "data": args.data, "split": args.split,
                   "image_size": image_size}  # fmt: skip
        summary.update(_json_scores(metrics))
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=2)
    return metrics


def evaluate(args):
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.evaluation import evaluate_segmentation, format_report

    model = load_model(args.model_path)
    run = read_run_config(args.model_path)
    image_size = _size(args.image_size) or _size(run.get("image_size"))
    if model_task(model) == "instance":
        return evaluate_instances_cli(args, model, image_size)
    data, info = load_segmentation_dataset(args.data, args.split)
    report = evaluate_segmentation(
        model, data, info.num_classes, info.ignore_class, image_size=image_size,
        batch_size=args.batch_size, postprocess=args.postprocess,
    )  # fmt: skip
    print(format_report(report, info.class_names))
    print(f"seconds per image:   {report['seconds_per_image']:.3f}")
    if args.output:
        summary = {
            "model_path": args.model_path,
            "data": args.data,
            "split": args.split,
            "postprocess": args.postprocess,
            "image_size": image_size,
            "num_images": report["num_images"],
            "seconds_per_image": report["seconds_per_image"],
            "global_accuracy": report["global_accuracy"],
            "mean_class_accuracy": report["mean_class_accuracy"],
            "mean_iou": report["mean_iou"],
            "per_class_iou": [None if np.isnan(v) else float(v) for v in report["per_class_iou"]],
        }
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=2)
    return report


def read_image(path):
    """An RGB uint8 array, or a clear error naming a missing or corrupt file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SystemExit(f"error: image {path!r} does not exist.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SystemExit(f"error: image {path!r} is not a readable image: {error}") from None


def predict(args):
    from keras_segattn.evaluation import predict_scores
    from keras_segattn.viz import label_palette, save_panels

    model = load_model(args.model_path)
    run = read_run_config(args.model_path)
    image_size = _size(args.image_size) or _size(run.get("image_size"))
    palette = label_palette(model.output.shape[-1])
    written = []
    for path in args.images:
        image = read_image(path)
        scores = predict_scores(model, image[None], image_size)
        class_map = np.argmax(np.asarray(scores)[0], axis=-1)
        name = os.path.splitext(os.path.basename(path))[0] + "_overlay.png"
        written.append(save_panels(os.path.join(args.output_dir, name), image, class_map, palette))
    print("wrote", *written, sep="\n  ")
    return written


# Largest difference from Keras accepted for a float32 export (probabilities,
# and the fraction of differing class ids).
EXPORT_TOLERANCE = 1e-3


def model_task(model):
    """Captioners are captioning; per-pixel scores (rank 4) are semantic,
    per-image ones classification."""
    if hasattr(model, "generate") and hasattr(model, "vocabulary"):
        return "captioning"
    if hasattr(model, "detect"):
        return "instance"
    return "semantic" if len(model.output.shape) == 4 else "classification"


def sample_images(model, task, data_spec, image_size, count=32):
    """`count` uint8 batches of one image each, for calibration and checks."""
    if task == "captioning":
        from keras_segattn.data import load_caption_dataset

        spec = data_spec or "shapes"
        kwargs = {"num_images": count, "image_size": model.image_size} if spec == "shapes" else {}
        data = load_caption_dataset(spec, "val", **kwargs).take(count)
        size = tuple(model.image_size)
        return [np.asarray(tf_resize_uint8(e["images"].numpy(), size))[None] for e in data]
    if task == "instance":
        from keras_segattn.data import load_instance_dataset

        spec = data_spec or "shapes"
        kwargs = {"num_images": count, "image_size": image_size or 64} if spec == "shapes" else {}
        data, _ = load_instance_dataset(spec, "val", **kwargs)
        return [e["images"].numpy()[None] for e in data.take(count)]
    if task == "classification":
        from keras_segattn.data import distorted_mnist, load_mnist

        size = model.input.shape[1]
        digits = tuple(a[:count] for a in load_mnist(data_spec, "test"))
        data = distorted_mnist("test", "RTS" if size == 42 else "R", source=digits)
        return [np.round(x.numpy()[None] * 255).astype(np.uint8) for x, _ in data]
    from keras_segattn.data import load_segmentation_dataset, segmentation_pipeline

    data, info = load_segmentation_dataset(data_spec or "shapes", "val")
    batches = segmentation_pipeline(
        data.take(count), 1, info.num_classes, info.ignore_class, image_size=image_size
    )
    return [x.numpy() for x, _ in batches]


def tf_resize_uint8(image, size):
    """Resizes one uint8 image (bilinear, rounded back to uint8)."""
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(image, tf.float32), size)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def export(args):
    from keras_segattn.export import convert_to_tflite, export_saved_model, verify_export
    from keras_segattn.export.saved_model import SERVING_FUNCTIONS

    model = load_model(args.model_path)
    run = read_run_config(args.model_path)
    task = model_task(model)
    name = args.name or run.get("model") or model.name
    path = export_saved_model(model, args.output, name=name, version=args.version, task=task)
    print("SavedModel (TF Serving layout):", path)

    images = sample_images(model, task, args.data or run.get("data"), _size(run.get("image_size")))
    reference = {k: v.numpy() for k, v in SERVING_FUNCTIONS[task](model)(images[0]).items()}
    report = verify_export(reference, images[0], saved_model_dir=path)
    show_parity(report)
    # String outputs (captions) are not TFLite builtins: a captioner's
    # TFLite model is its "tokens" signature (token ids and attention).
    signature = "tokens" if task == "captioning" else "serving_default"
    for quantization in args.tflite:
        suffix = "" if quantization == "float32" else f"_{quantization}"
        tflite_path = os.path.join(args.output, name, f"{name}{suffix}.tflite")
        convert_to_tflite(
            path, tflite_path, quantization, representative_images=images,
            signature_key=signature,
        )  # fmt: skip
        check = verify_export(reference, images[0], tflite_model=tflite_path)["tflite"]
        report[f"tflite_{quantization}"] = check
        print(f"TFLite {quantization}: {tflite_path} ({os.path.getsize(tflite_path) / 1e6:.1f} MB)")
        show_parity({"tflite": check})
        if quantization == "float32" and max(check.values()) > EXPORT_TOLERANCE:
            raise SystemExit(
                f"error: the float32 TFLite model differs from Keras by {max(check.values()):.2e}"
                f" (> {EXPORT_TOLERANCE}); {tflite_path} is not usable."
            )
    if max(report["saved_model"].values()) > EXPORT_TOLERANCE:
        raise SystemExit(f"error: the SavedModel differs from Keras: {report['saved_model']}")
    return path, report


def _json_scores(metrics):
    """Scores as JSON-ready floats (nested dicts such as `per_class_AP` too)."""
    return {
        str(k): _json_scores(v) if isinstance(v, dict) else float(v) for k, v in metrics.items()
    }


def _train_array_instance_model(args, kwargs):
    """sds / hypercolumns: host-side examples, `fit` on arrays (their own defaults)."""
    from keras_segattn.models.instance.hypercolumns import train_hypercolumns
    from keras_segattn.models.instance.sds import train_sds

    trainer = {"sds": train_sds, "hypercolumns": train_hypercolumns}[args.model]
    options = {
        "num_train_images": args.num_train, "num_eval_images": args.num_val,
        "epochs": args.epochs, "batch_size": args.batch_size,
    }  # fmt: skip
    result = trainer(
        dataset=args.data, image_size=args.image_size, learning_rate=args.learning_rate,
        seed=args.seed, verbose=args.verbose,
        **{k: v for k, v in options.items() if v is not None}, **kwargs,
    )  # fmt: skip
    extra = {"data_seconds": round(result["data_seconds"], 1),
             "eval_seconds": round(result["eval_seconds"], 1)}  # fmt: skip
    for key in ("metrics_unrefined", "box_metrics", "detector_metrics", "detector_only_metrics"):
        if key in result:
            extra[key] = _json_scores(result[key])
    return result, extra


def instance_train(args):
    from keras_segattn.models.instance.train import SHAPES_MNC, train_instance_model

    kwargs = dict(SHAPES_MNC) if args.model == "mnc" and args.data == "shapes" else {}
    kwargs.update(_model_args(args.model_arg))
    if args.model in ("sds", "hypercolumns"):
        result, extra = _train_array_instance_model(args, kwargs)
    else:
        options = {
            "num_train": args.num_train, "num_val": args.num_val,
            "epochs": args.epochs, "batch_size": args.batch_size,
        }  # fmt: skip
        result = train_instance_model(
            args.model, args.data, image_size=args.image_size,
            max_instances=args.max_instances, learning_rate=args.learning_rate,
            model_kwargs=kwargs, seed=args.seed, verbose=args.verbose,
            **{k: v for k, v in options.items() if v is not None},
        )  # fmt: skip
        extra = {}
    os.makedirs(args.output, exist_ok=True)
    result["model"].save(os.path.join(args.output, "last.keras"))
    with open(os.path.join(args.output, "run.json"), "w") as f:
        json.dump({k: v for k, v in vars(args).items() if k != "func"}, f, indent=2)
    summary = {
        "model": args.model, "data": args.data, "image_size": args.image_size,
        "epochs": len(result["history"]["loss"]),  # the trainer's default if not given
        "train_seconds": round(result["train_seconds"], 1),
        **_json_scores(result.get("metrics", {})), **extra,
    }  # fmt: skip
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP"):
        if key in summary:
            print(f"{key:<10} {summary[key]:.3f}")
    print(f"trained in {summary['train_seconds']:.0f} s; model and metrics in {args.output}")
    return summary


def caption_train(args):
    from keras_segattn.caption_training import train_captioner

    metrics = train_captioner(
        data=args.data, attention=args.attention, encoder=args.encoder,
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        max_length=args.max_length, num_images=args.num_images,
        learning_rate=args.learning_rate, output=args.output, val_split=args.val_split,
        eval_split=args.eval_split, beam_width=args.beam_width, seed=args.seed,
        model_kwargs=_model_args(args.model_arg), verbose=args.verbose,
    )  # fmt: skip
    print_caption_report(metrics)
    print(f"\ntrained in {metrics['train_seconds']:.0f} s; checkpoints, metrics in {args.output}")
    return metrics


def print_caption_report(metrics):
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "CIDEr", "exact_match",
                "localization", "localization_uniform"):  # fmt: skip
        if key in metrics:
            print(f"{key:<22} {metrics[key]:.4f}")
    for example in metrics.get("examples", []):
        print(f"  {example['generated']!r}  (reference: {example['references'][0]!r})")


def caption_evaluate(args):
    from keras_segattn.caption_training import evaluate_captioner
    from keras_segattn.data import load_caption_dataset

    model = load_model(args.model_path)
    if model_task(model) != "captioning":
        raise SystemExit(f"error: {args.model_path} is not a captioning model.")
    kwargs = {}
    if args.data == "shapes":
        kwargs = {"num_images": args.num_images, "image_size": model.image_size}
    data = load_caption_dataset(args.data, args.split, **kwargs)
    metrics = evaluate_captioner(
        model, data, beam_width=args.beam_width, shapes=args.data == "shapes"
    )
    print_caption_report(metrics)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def caption(args):
    from keras_segattn.caption_training import attention_figure

    model = load_model(args.model_path)
    if model_task(model) != "captioning":
        raise SystemExit(f"error: {args.model_path} is not a captioning model.")
    os.makedirs(args.output_dir, exist_ok=True)
    method = "greedy" if args.beam_width == 1 else "beam"
    written = []
    for path in args.images:
        image = read_image(path)
        generated = model.generate(image[None], method=method, beam_width=args.beam_width)
        name = os.path.splitext(os.path.basename(path))[0] + "_attention.png"
        figure = attention_figure(
            model, image, os.path.join(args.output_dir, name), beam_width=args.beam_width
        )
        print(f"{path}: {generated['captions'][0]}")
        written.append(figure)
    print("wrote", *written, sep="\n  ")
    return written


def show_parity(report):
    for artifact, diffs in report.items():
        print(f"  {artifact} vs Keras: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


def list_registered(args):
    from keras_segattn.models import get_model_spec, list_models

    for name in list_models(args.task):
        spec = get_model_spec(name)
        print(f"{name:<12} {spec.task:<10} {spec.paper}")


def stn_table(args):
    from keras_segattn.models.spatial_transformer.reproduce import run_table

    run_table(
        args.rows, args.distortions, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed, output=args.output,
        source=args.mnist, limit=args.limit, verbose=args.verbose,
    )  # fmt: skip


def stn_figure(args):
    from keras_segattn.models.spatial_transformer.reproduce import transformer_figure

    print("wrote", transformer_figure(args.model_path, args.distortion, args.output,
                                      args.count, source=args.mnist))  # fmt: skip


def demo(args):
    from keras_segattn.demo import run_demo

    return run_demo(args.output, quick=args.quick)


def build_parser():
    parser = argparse.ArgumentParser(prog="segattn", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a semantic segmentation model")
    p.add_argument("--model", default="fcn8s", help="a semantic model of `segattn models`")
    p.add_argument(
        "--data", default="shapes", help="shapes | camvid:<root> | voc:<root> | tfds:<name>"
    )
    p.add_argument("--num-images", type=int, default=1000, help="training images of 'shapes'")
    p.add_argument("--output", default="runs/train")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument(
        "--stage1-epochs",
        type=int,
        default=0,
        help="DeconvNet two-stage training: epochs on object-centred crops first",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs="+", help="H [W]: resize every image")
    p.add_argument("--crop-size", type=int, nargs="+", help="H [W]: training crops")
    p.add_argument("--augment", action="store_true", help="random flip, scale and crop")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-norm", action="store_true", help="FCN: batch norm (not in the paper)")
    p.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        help="another builder argument, e.g. instances=2 (recurrent_cnn); repeatable",
    )
    p.add_argument(
        "--weights",
        default=None,
        type=lambda v: None if v.lower() == "none" else v,
        help="none, imagenet or a weights file",
    )
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--class-weights", choices=["none", "median"], default="none")
    p.add_argument("--val-split", default="val")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, help="1 progress bar, 2 one line an epoch")
    p.set_defaults(func=train)

    p = commands.add_parser(
        "evaluate",
        help="score a split: accuracy and IoU (semantic); COCO mask AP and mAP^r (rpn, mnc)",
    )
    p.add_argument("--model-path", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--image-size", type=int, nargs="+")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--postprocess",
        choices=["superpixels", "crf"],
        help="refine each image's probabilities on the host before scoring",
    )
    p.add_argument("--output", help="also write the scores to this JSON file")
    p.set_defaults(func=evaluate)

    p = commands.add_parser("predict", help="write overlay PNGs for image files")
    p.add_argument("--model-path", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--output-dir", default="predictions")
    p.add_argument("--image-size", type=int, nargs="+")
    p.set_defaults(func=predict)

    p = commands.add_parser("export", help="SavedModel for TF Serving and TFLite files")
    p.add_argument("--model-path", required=True)
    p.add_argument("--output", default="saved_models")
    p.add_argument("--name")
    p.add_argument("--version", type=int, default=1)
    p.add_argument(
        "--tflite",
        nargs="*",
        default=["float32"],
        choices=["float32", "float16", "dynamic", "int8"],
    )
    p.add_argument(
        "--data",
        help="images for int8 calibration and the parity check: a dataset "
        "spec (semantic models; default the training data) or an MNIST source",
    )
    p.set_defaults(func=export)

    p = commands.add_parser("instance-train", help="train and score rpn, mnc, sds or hypercolumns")
    p.add_argument("--model", choices=["mnc", "rpn", "sds", "hypercolumns"], default="mnc")
    p.add_argument("--data", default="shapes", help="shapes | coco:<root>")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--num-train", type=int, default=None,
        help="training images (shapes: how many to generate, default 1000 for mnc/rpn)",
    )  # fmt: skip
    p.add_argument(
        "--num-val", type=int, default=None,
        help="held-out images (shapes: how many to generate, default 200 for mnc/rpn)",
    )  # fmt: skip
    p.add_argument(
        "--max-instances", type=int, default=None,
        help="instances kept per training image (default: 3 for shapes, all otherwise)",
    )  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the trainer's")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument(
        "--model-arg", action="append", metavar="KEY=VALUE",
        help="builder argument (mnc, rpn) or trainer argument (sds, hypercolumns)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/instance")
    p.add_argument("--verbose", type=int, default=2)
    p.set_defaults(func=instance_train)

    p = commands.add_parser("caption-train", help="train and score a Show-Attend-Tell captioner")
    p.add_argument("--data", default="shapes", help="shapes | coco:<root> | flickr8k:<root>")
    p.add_argument("--attention", choices=["soft", "hard"], default="soft")
    p.add_argument("--encoder", choices=["light", "vgg16"], default="light")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=16, help="tokens per caption, <end> included")
    p.add_argument("--num-images", type=int, default=2000, help="training images of 'shapes'")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--val-split", default="val")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--beam-width", type=int, default=3)
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="another show_attend_tell argument, e.g. units=512")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/caption")
    p.add_argument("--verbose", type=int, default=2)
    p.set_defaults(func=caption_train)

    p = commands.add_parser("caption-evaluate", help="BLEU/METEOR/CIDEr of a captioner")
    p.add_argument("--model-path", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--num-images", type=int, default=400, help="images of 'shapes'")
    p.add_argument("--beam-width", type=int, default=3)
    p.add_argument("--output", help="also write the scores to this JSON file")
    p.set_defaults(func=caption_evaluate)

    p = commands.add_parser("caption", help="caption image files, one attention figure each")
    p.add_argument("--model-path", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--beam-width", type=int, default=3)
    p.add_argument("--output-dir", default="captions")
    p.set_defaults(func=caption)

    p = commands.add_parser("models", help="list the registered models")
    p.add_argument("--task")
    p.set_defaults(func=list_registered)

    p = commands.add_parser("stn-table", help="Spatial Transformer Networks' Table 1 on MNIST")
    p.add_argument(
        "--rows",
        nargs="+",
        default=["cnn", "st_cnn:affine", "st_cnn:tps"],
        help="cnn, fcn, st_cnn:<affine|projective|tps>, st_fcn:<...>",
    )
    p.add_argument("--distortions", nargs="+", default=["R", "RTS"], choices=["R", "RTS", "P", "E"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mnist", help="MNIST folder of IDX files, 'keras' or 'tfds'")
    p.add_argument("--limit", type=int, help="use only this many digits (smoke runs)")
    p.add_argument("--output", default="runs/stn")
    p.add_argument("--verbose", type=int, default=2)
    p.set_defaults(func=stn_table)

    p = commands.add_parser("stn-figure", help="distorted digits above the transformer's output")
    p.add_argument("--model-path", required=True)
    p.add_argument("--distortion", default="RTS", choices=["R", "RTS", "P", "E"])
    p.add_argument("--output", default="docs/stn.png")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--mnist")
    p.set_defaults(func=stn_figure)

    p = commands.add_parser("demo", help="the main job: train, evaluate, export on built-in data")
    p.add_argument("--output", default="saved_models")
    p.add_argument("--quick", action="store_true", help="a few steps only (for tests)")
    p.set_defaults(func=demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, RuntimeError, ImportError) as error:
        # The package raises these for user mistakes, with a message that
        # names the argument; a traceback would only bury it.
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
