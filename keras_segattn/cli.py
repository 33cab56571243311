"""The `segattn` command: train, evaluate, predict, export and the demo.

Argument parsing and printing only: every command calls one function of
`keras_segattn.recipes`, `keras_segattn.evaluation` or `keras_segattn.export`,
and a model's task (which decides what a command does with it) comes from
the registry. Nothing in the package imports this module.
"""

import argparse
import os
import sys

import numpy as np

from keras_segattn.core.validation import optional_size


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


def _config(args):
    """The command's arguments, as `run.json` records them."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _load(path):
    from keras_segattn.checkpoints import load_model
    from keras_segattn.models import task_of

    model = load_model(path, "--model-path")
    return model, task_of(model)


def _write_scores(path, summary):
    if path:
        from keras_segattn.recipes.runs import write_json

        write_json(path, summary)


def train(args):
    from keras_segattn.recipes.semantic import train_segmenter

    return train_segmenter(
        args.model, args.data, args.output, epochs=args.epochs, batch_size=args.batch_size,
        image_size=args.image_size, crop_size=args.crop_size, augment=args.augment,
        width=args.width, weights=args.weights,
        model_kwargs={**({"batch_norm": True} if args.batch_norm else {}),
                      **_model_args(args.model_arg)},
        learning_rate=args.learning_rate, schedule=args.schedule,
        class_weights=args.class_weights, num_images=args.num_images,
        val_split=args.val_split, eval_split=args.eval_split,
        stage1_epochs=args.stage1_epochs, patience=args.patience,
        patches_per_image=args.patches_per_image, seed=args.seed, verbose=args.verbose,
        strategy=args.strategy,
        mixed_precision=args.mixed_precision, config=_config(args), overwrite=args.overwrite,
    )  # fmt: skip


def evaluate(args):
    from keras_segattn.checkpoints import read_run_config

    model, task = _load(args.model_path)
    run = read_run_config(args.model_path)
    image_size = optional_size(args.image_size, "--image-size") or optional_size(
        run.get("image_size"), "image_size of run.json"
    )
    summary = {"model_path": args.model_path, "data": args.data, "split": args.split,
               "image_size": image_size}  # fmt: skip
    if task == "instance":
        return _evaluate_instances(args, model, image_size, summary)
    if task not in ("semantic", "patch"):
        raise ValueError(
            f"segattn evaluate scores semantic, patch and instance models; {model.name} is a "
            f"{task} model (use caption-evaluate or stn-table)."
        )
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.evaluation import evaluate_segmentation, format_report
    from keras_segattn.models.semantic import dense_model

    data, info = load_segmentation_dataset(args.data, args.split)
    scored = dense_model(model) if task == "patch" else model
    if scored.output.shape[-1] != info.num_classes:
        raise ValueError(
            f"--model-path {args.model_path} predicts {scored.output.shape[-1]} classes but "
            f"--data {args.data} has {info.num_classes}; score a model on the data it was "
            "trained for."
        )
    report = evaluate_segmentation(
        scored, data, info.num_classes, info.ignore_class, image_size=image_size,
        batch_size=args.batch_size, postprocess=args.postprocess,
    )  # fmt: skip
    print(format_report(report, info.class_names))
    print(f"seconds per image:   {report['seconds_per_image']:.3f}")
    keys = ("num_images", "seconds_per_image", "global_accuracy", "mean_class_accuracy",
            "mean_iou", "per_class_iou")  # fmt: skip
    _write_scores(
        args.output, {**summary, "postprocess": args.postprocess, **{k: report[k] for k in keys}}
    )
    return report


def _evaluate_instances(args, model, image_size, summary):
    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import load_instance_dataset, resize_instances
    from keras_segattn.evaluation.instance import evaluate_instance_checkpoint

    if args.postprocess:
        raise ValueError("--postprocess applies to semantic models only.")
    data, info = load_instance_dataset(args.data, args.split)
    if image_size and args.data != "shapes":  # shapes are generated at their size
        data = resize_instances(data, image_size)
    detector = load_model(args.detector, "--detector") if args.detector else None
    metrics = evaluate_instance_checkpoint(
        model, data, info.num_classes, args.batch_size, detector=detector
    )
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP", "box_AP50"):
        print(f"{key:<10} {metrics[key]:.3f}")
    print(f"seconds per image (detect): {metrics['predict_seconds_per_image']:.3f}")
    _write_scores(args.output, {**summary, **metrics})
    return metrics


def read_image(path):
    """An RGB uint8 array, or a clear error naming a missing or corrupt file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale, not clip
                scale = 65535.0 if image.mode.startswith("I;16") else max(np.max(image), 1)
                grey = np.asarray(image, np.float64) * (255.0 / scale)
                return np.repeat(np.round(grey).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SystemExit(f"error: image {path!r} does not exist.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SystemExit(f"error: image {path!r} is not a readable image: {error}") from None


def output_names(paths, suffix):
    """One output file name per input path, never the same twice: inputs of
    the same name from different folders get `_2`, `_3`, ... after it."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem + (f"_{seen[stem]}" if seen[stem] > 1 else "") + suffix)
    return names


def predict(args):
    from keras_segattn.checkpoints import read_run_config
    from keras_segattn.evaluation import predict_scores
    from keras_segattn.models.semantic import dense_model
    from keras_segattn.viz import label_palette, save_panels

    model, task = _load(args.model_path)
    if task not in ("semantic", "patch"):
        raise ValueError(f"segattn predict draws semantic models; {model.name} is a {task} model.")
    model = dense_model(model) if task == "patch" else model
    run = read_run_config(args.model_path)
    image_size = optional_size(args.image_size, "--image-size") or optional_size(
        run.get("image_size"), "image_size of run.json"
    )
    palette = label_palette(model.output.shape[-1])
    written = []
    for path, name in zip(args.images, output_names(args.images, "_overlay.png")):
        image = read_image(path)
        scores = predict_scores(model, image[None], image_size)
        class_map = np.argmax(np.asarray(scores)[0], axis=-1)
        written.append(save_panels(os.path.join(args.output_dir, name), image, class_map, palette))
    print("wrote", *written, sep="\n  ")
    return written


def export(args):
    from keras_segattn.export import export_checkpoint

    return export_checkpoint(
        args.model_path, args.output, name=args.name, version=args.version, tflite=args.tflite,
        data=args.data, tflite_size=args.tflite_size, keras_file=args.keras,
    )  # fmt: skip


def instance_train(args):
    from keras_segattn.recipes.instance import train_instances

    summary = train_instances(
        args.model, args.data, args.output, image_size=args.image_size,
        num_train=args.num_train, num_val=args.num_val, max_instances=args.max_instances,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        model_kwargs=_model_args(args.model_arg), seed=args.seed, verbose=args.verbose,
        strategy=args.strategy, mixed_precision=args.mixed_precision, config=_config(args),
        overwrite=args.overwrite,
    )  # fmt: skip
    if summary is None:  # another worker than the chief
        return None
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP"):
        if key in summary:
            print(f"{key:<10} {summary[key]:.3f}")
    print(f"trained in {summary['train_seconds']:.0f} s; model and metrics in {args.output}")
    return summary


def caption_train(args):
    from keras_segattn.recipes.captioning import train_captioner

    metrics = train_captioner(
        data=args.data, attention=args.attention, encoder=args.encoder,
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        max_length=args.max_length, num_images=args.num_images,
        learning_rate=args.learning_rate, output=args.output, val_split=args.val_split,
        eval_split=args.eval_split, beam_width=args.beam_width, seed=args.seed,
        model_kwargs=_model_args(args.model_arg), verbose=args.verbose,
        strategy=args.strategy, mixed_precision=args.mixed_precision, config=_config(args),
        overwrite=args.overwrite,
    )  # fmt: skip
    if metrics is None:  # another worker than the chief
        return None
    print_caption_report(metrics)
    print(f"\ntrained in {metrics['train_seconds']:.0f} s; checkpoints, metrics in {args.output}")
    return metrics


def print_caption_report(metrics):
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "CIDEr", "exact_match",
                "localization", "localization_uniform", "localization_colour",
                "localization_colour_uniform", "attended_cells"):  # fmt: skip
        if isinstance(metrics.get(key), int):  # a count: attended_cells
            print(f"{key:<27} {metrics[key]}")
        elif key in metrics:
            print(f"{key:<27} {metrics[key]:.4f}")
    for example in metrics.get("examples", []):
        print(f"  {example['generated']!r}  (reference: {example['references'][0]!r})")


def _captioner(path):
    model, task = _load(path)
    if task != "captioning":
        raise ValueError(f"--model-path {path} is not a captioning model.")
    return model


def caption_evaluate(args):
    from keras_segattn.data import load_caption_dataset
    from keras_segattn.evaluation import evaluate_captioner
    from keras_segattn.recipes.captioning import shapes_objects

    model = _captioner(args.model_path)
    kwargs = {}
    if args.data == "shapes":
        kwargs = {"num_images": args.num_images, "image_size": model.image_size}
    data = load_caption_dataset(args.data, args.split, **kwargs)
    metrics = evaluate_captioner(
        model, data, beam_width=args.beam_width, **shapes_objects(args.data)
    )
    print_caption_report(metrics)
    _write_scores(args.output, metrics)
    return metrics


def caption(args):
    from keras_segattn.viz import attention_figure

    model = _captioner(args.model_path)
    os.makedirs(args.output_dir, exist_ok=True)
    method = "greedy" if args.beam_width == 1 else "beam"
    written = []
    for path, name in zip(args.images, output_names(args.images, "_attention.png")):
        image = read_image(path)
        generated = model.generate(image[None], method=method, beam_width=args.beam_width)
        figure = attention_figure(
            model, image, os.path.join(args.output_dir, name), beam_width=args.beam_width
        )
        print(f"{path}: {generated['captions'][0]}")
        written.append(figure)
    print("wrote", *written, sep="\n  ")
    return written


def score_export(args):
    from keras_segattn.recipes.served import score_shipped

    scores = score_shipped(args.folder, args.images, args.shared_data)
    for key, value in scores.items():
        print(f"{key:<16} {value:.4f}")
    return scores


def list_registered(args):
    from keras_segattn.models import get_model_spec, list_models

    for name in list_models(args.task):
        spec = get_model_spec(name)
        print(f"{name:<12} {spec.task:<10} {spec.paper}")


def stn_table(args):
    from keras_segattn.recipes.stn import run_table

    run_table(
        args.rows, args.distortions, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, optimizer=args.optimizer, schedule=args.schedule,
        momentum=args.momentum, seed=args.seed, output=args.output, source=args.mnist,
        limit=args.limit, overwrite=args.overwrite, verbose=args.verbose,
    )  # fmt: skip


def stn_figure(args):
    from keras_segattn.recipes.stn import transformer_figure

    print("wrote", transformer_figure(args.model_path, args.distortion, args.output,
                                      args.count, source=args.mnist))  # fmt: skip


def demo(args):
    from keras_segattn.recipes.demo import run_demo

    return run_demo(args.output, quick=args.quick)


def _add_training_arguments(p, command):
    """The arguments every training command shares, then `func=command`."""
    p.add_argument(
        "--strategy", default="auto",
        choices=["auto", "default", "mirrored", "multi-worker", "tpu"],
        help="auto: a TPU if attached, the $TF_CONFIG cluster if it has several workers, "
        "all GPUs if several, else one device; --batch-size is the global batch",
    )  # fmt: skip
    p.add_argument(
        "--mixed-precision", choices=["float16", "bfloat16"],
        help="compute in float16 (GPUs, with loss scaling) or bfloat16 (TPUs, recent GPUs); "
        "variables and outputs stay float32",
    )  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true",
        help="empty --output and train afresh (by default a finished run is reported, an "
        "interrupted one resumed, and a folder of another run refused)",
    )  # fmt: skip
    p.set_defaults(func=command)


def build_parser():
    parser = argparse.ArgumentParser(prog="segattn", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a semantic segmentation model")
    p.add_argument(
        "--model", default="fcn8s", help="a semantic model of `segattn models`, or patch_cnn"
    )
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
    p.add_argument(
        "--patience",
        type=int,
        help="stop once validation mean IoU (patch accuracy for patch_cnn) has not improved "
        "for this many epochs (after stage 1); --epochs is then the most it trains",
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
    p.add_argument(
        "--schedule", default="constant", choices=["constant", "cosine"],
        help="the learning rate: constant, or cosine-decayed once an epoch (after stage 1) "
        "towards 0 at --epochs",
    )  # fmt: skip
    p.add_argument("--class-weights", choices=["none", "median"], default="none")
    p.add_argument(
        "--patches-per-image", type=int, default=64,
        help="patch_cnn: labelled patches drawn from each image every epoch",
    )  # fmt: skip
    p.add_argument("--val-split", default="val")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, help="1 progress bar, 2 one line an epoch")
    _add_training_arguments(p, train)

    p = commands.add_parser(
        "evaluate",
        help="score a split: accuracy and IoU (semantic, patch_cnn densely); COCO mask AP "
        "and mAP^r (rpn, mnc, sds, hypercolumns)",
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
    p.add_argument(
        "--detector",
        help="hypercolumns: an sds .keras file whose detections it re-segments "
        "(default: jittered ground-truth boxes)",
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
    p.add_argument(
        "--tflite-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="also write TFLite files at this fixed image size "
        "(<name>_v<version>_<H>x<W>[_<quantization>].tflite), which XNNPACK runs whole",
    )
    p.add_argument(
        "--keras",
        action="store_true",
        help="also write the Keras model (no optimizer state) and its run's arguments "
        "(<name>_v<version>.keras, .run.json): what predict, caption and evaluate load",
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
    _add_training_arguments(p, instance_train)

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
    _add_training_arguments(p, caption_train)

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

    p = commands.add_parser(
        "score-export", help="score a shipped model's SavedModel on its held-out data"
    )
    p.add_argument("folder", help="a folder with a heldout.json, e.g. saved_models/st_cnn_rts")
    p.add_argument("--images", type=int, help="the first N held-out examples (default: all)")
    p.add_argument("--shared-data", default="../shared/data", help="the data folder")
    p.set_defaults(func=score_export)

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
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum")
    p.add_argument(
        "--schedule", default="cosine", choices=["cosine", "step"],
        help="cosine to 0, or step: /10 after 1/3 and 2/3 of the steps (the paper's)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mnist", help="MNIST folder of IDX files, 'keras' or 'tfds'")
    p.add_argument("--limit", type=int, help="use only this many digits (smoke runs)")
    p.add_argument("--output", default="runs/stn")
    p.add_argument("--overwrite", action="store_true",
                   help="start a cell afresh if its folder holds other settings")  # fmt: skip
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
