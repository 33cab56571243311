"""The `segattn` command: train, evaluate, predict, export and the demo.

Argument parsing and printing only: every command calls one function of
`keras_segattn.recipes`, `keras_segattn.evaluation` or `keras_segattn.export`,
or asks a loaded model's task (`keras_segattn.tasks.task_of`) what to do with
it. Nothing in the package imports this module.
"""

import argparse
import os
import sys

import numpy as np

from keras_segattn.core.validation import optional_size


def _load(path):
    """The model of a `.keras` file and its `Task`."""
    from keras_segattn.checkpoints import load_model
    from keras_segattn.tasks import task_of

    model = load_model(path, "--model-path")
    return model, task_of(model)


def _write_scores(path, summary):
    if path:
        from keras_segattn.recipes.runs import write_json

        write_json(path, summary)


def train(args):
    from keras_segattn.recipes.semantic import SegmenterConfig, train_segmenter

    return train_segmenter(SegmenterConfig.from_arguments(args), overwrite=args.overwrite)


def _image_size(args, model_path):
    """`--image-size`, else the size the model's run trained at (`run.json`)."""
    from keras_segattn.checkpoints import read_run_config

    run = read_run_config(model_path)
    return optional_size(args.image_size, "--image-size") or optional_size(
        run.get("image_size"), "image_size of run.json"
    )


def evaluate(args):
    from keras_segattn.tasks import EvaluateOptions

    model, task = _load(args.model_path)
    image_size = _image_size(args, args.model_path)
    options = EvaluateOptions(
        data=args.data,
        split=args.split,
        image_size=image_size,
        batch_size=args.batch_size,
        postprocess=args.postprocess,
        detector=args.detector,
        proposals=args.proposals,
        merge=args.merge,
        ensemble=args.ensemble,
    )
    scores, lines = task.evaluate(model, options)
    print(*lines, sep="\n")
    summary = {
        "model_path": args.model_path,
        "data": args.data,
        "split": args.split,
        "image_size": image_size,
    }
    _write_scores(args.output, {**summary, **scores})
    return scores


# The largest image `predict` and `caption` decode (8192 x 8192): a small
# file claiming more is refused from its header.
MAX_IMAGE_PIXELS = 8192 * 8192


def read_image(path):
    """An RGB uint8 array, or a clear error naming a missing, corrupt or
    too large file (its size read from the header, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise SystemExit(
                    f"error: image {path!r} is {image.height}x{image.width} pixels, more than "
                    f"the {MAX_IMAGE_PIXELS:,} this command decodes."
                )
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale, not clip
                scale = 65535.0 if image.mode.startswith("I;16") else max(np.max(image), 1)
                grey = np.asarray(image, np.float64) * (255.0 / scale)
                return np.repeat(np.round(grey).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SystemExit(f"error: image {path!r} does not exist.") from None
    except Image.DecompressionBombError as error:  # PIL's own check, past 2 x 89M pixels
        raise SystemExit(
            f"error: image {path!r} has more than the {MAX_IMAGE_PIXELS:,} pixels this command "
            f"decodes ({error})."
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise SystemExit(f"error: image {path!r} is not a readable image: {error}") from None


def output_names(paths, suffix):
    """One output file name per input path, never the same twice: inputs of
    the same name from different folders get `_2`, `_3`, ... after it."""
    names, taken = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, count = stem + suffix, 1
        while name in taken:  # `frame` twice and a `frame_2`: frame_3 for the third
            count += 1
            name = f"{stem}_{count}{suffix}"
        taken.add(name)
        names.append(name)
    return names


def _output_dir(path):
    """Creates the `--output-dir` folder; a file there is named, not a traceback."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output-dir {path!r} is a file; expected a folder.")
    os.makedirs(path, exist_ok=True)
    return path


def predict(args):
    from keras_segattn.evaluation import predict_scores
    from keras_segattn.viz import label_palette, save_panels

    model, task = _load(args.model_path)
    model = task.draw(model)  # per-pixel scores (a patch classifier's dense labeller)
    _output_dir(args.output_dir)
    image_size = _image_size(args, args.model_path)
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
        args.model_path,
        args.output,
        name=args.name,
        version=args.version,
        tflite=args.tflite,
        data=args.data,
        tflite_size=args.tflite_size,
        keras_file=args.keras,
        onnx=args.onnx,
        max_pixels=args.max_pixels,
        max_batch_pixels=args.max_batch_pixels,
    )


def instance_train(args):
    from keras_segattn.recipes.instance import InstanceConfig, train_instances

    summary = train_instances(InstanceConfig.from_arguments(args), overwrite=args.overwrite)
    if summary is None:  # another worker than the chief
        return None
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP"):
        if key in summary:
            print(f"{key:<10} {summary[key]:.3f}")
    print(f"trained in {summary['train_seconds']:.0f} s; model and metrics in {args.output}")
    return summary


def caption_train(args):
    from keras_segattn.recipes.captioning import CaptionerConfig, train_captioner

    metrics = train_captioner(CaptionerConfig.from_arguments(args), overwrite=args.overwrite)
    if metrics is None:  # another worker than the chief
        return None
    print_caption_report(metrics)
    print(f"\ntrained in {metrics['train_seconds']:.0f} s; checkpoints, metrics in {args.output}")
    return metrics


def print_caption_report(metrics):
    for key in (
        "BLEU-1",
        "BLEU-2",
        "BLEU-3",
        "BLEU-4",
        "METEOR",
        "CIDEr",
        "exact_match",
        "localization",
        "localization_uniform",
        "localization_colour",
        "localization_colour_uniform",
        "attended_cells",
    ):
        if key not in metrics:
            continue
        if metrics[key] is None or isinstance(metrics[key], int):  # unmeasured; a count
            print(f"{key:<27} {metrics[key]}")
        else:
            print(f"{key:<27} {metrics[key]:.4f}")
    for example in metrics.get("examples", []):
        print(f"  {example['generated']!r}  (reference: {example['references'][0]!r})")


def _captioner(path):
    model, task = _load(path)
    return task.captioner(model)


def caption_evaluate(args):
    from keras_segattn.data import generation_options, load_caption_dataset
    from keras_segattn.evaluation import evaluate_captioner
    from keras_segattn.recipes.captioning import shapes_objects

    model = _captioner(args.model_path)
    options = generation_options(args.data, num_images=args.num_images, image_size=model.image_size)
    data, _ = load_caption_dataset(args.data, args.split, **options)
    metrics = evaluate_captioner(
        model, data, beam_width=args.beam_width, **shapes_objects(args.data)
    )
    print_caption_report(metrics)
    _write_scores(args.output, metrics)
    return metrics


def caption(args):
    from keras_segattn.viz import attention_figure

    model = _captioner(args.model_path)
    _output_dir(args.output_dir)
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
        args.rows,
        args.distortions,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        schedule=args.schedule,
        momentum=args.momentum,
        seed=args.seed,
        output=args.output,
        source=args.mnist,
        limit=args.limit,
        overwrite=args.overwrite,
        verbose=args.verbose,
        strategy=args.strategy,
        mixed_precision=args.mixed_precision,
        deterministic=args.deterministic,
    )


def stn_figure(args):
    from keras_segattn.recipes.stn import transformer_figure

    print(
        "wrote",
        transformer_figure(
            args.model_path, args.distortion, args.output, args.count, source=args.mnist
        ),
    )


def demo(args):
    from keras_segattn.recipes.demo import run_demo

    return run_demo(args.output, quick=args.quick)


def _add_overwrite(p, command):
    """`--overwrite`, then `func=command`."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="empty --output and train afresh (by default a finished run is reported, an "
        "interrupted one resumed, and a folder of another run refused)",
    )
    p.set_defaults(func=command)


DEFAULTS = argparse.ArgumentDefaultsHelpFormatter  # `--help` says each default


def build_parser():
    from keras_segattn.recipes.captioning import CaptionerConfig
    from keras_segattn.recipes.config import RecipeConfig, add_arguments
    from keras_segattn.recipes.instance import InstanceConfig
    from keras_segattn.recipes.semantic import SegmenterConfig

    parser = argparse.ArgumentParser(prog="segattn", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser(
        "train", help="train a semantic segmentation model", formatter_class=DEFAULTS
    )
    add_arguments(p, SegmenterConfig)
    _add_overwrite(p, train)

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
    p.add_argument(
        "--proposals",
        type=int,
        metavar="N",
        help="semantic: DeconvNet's proposal-wise inference on each image's N best selective-"
        "search proposals and the whole image, each resized to the model's input",
    )
    p.add_argument(
        "--merge",
        choices=["sum", "max"],
        default="sum",
        help="how --proposals merges the proposals' probabilities",
    )
    p.add_argument(
        "--ensemble",
        nargs="+",
        default=[],
        metavar="KERAS",
        help="semantic: average the class probabilities with these models' (EDeconvNet: a "
        "proposal-wise DeconvNet with a whole-image FCN-8s)",
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
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also write <name>_v<version>.onnx (the TFLite file's signature, through "
        "tf2onnx; needs pip install keras_segattn[onnx]), verified in onnxruntime",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="the most pixels (height x width) of one image served (default 2048x2048); "
        "larger ones are refused by index before they are decoded",
    )
    p.add_argument(
        "--max-batch-pixels",
        type=int,
        default=None,
        help="the most pixels of one request, its images padded to the largest "
        "(default 2 x 2048x2048)",
    )
    p.set_defaults(func=export)

    p = commands.add_parser(
        "instance-train",
        help="train and score an instance model (rpn, mnc, sds, hypercolumns)",
        formatter_class=DEFAULTS,
    )
    add_arguments(p, InstanceConfig)
    _add_overwrite(p, instance_train)

    p = commands.add_parser(
        "caption-train",
        help="train and score a Show-Attend-Tell captioner",
        formatter_class=DEFAULTS,
    )
    add_arguments(p, CaptionerConfig)
    _add_overwrite(p, caption_train)

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
        "--schedule",
        default="cosine",
        choices=["cosine", "step"],
        help="cosine to 0, or step: /10 after 1/3 and 2/3 of the steps (the paper's)",
    )
    p.add_argument("--mnist", help="MNIST folder of IDX files, 'keras' or 'tfds'")
    p.add_argument("--limit", type=int, help="use only this many digits (smoke runs)")
    p.add_argument("--output", default="runs/stn")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a cell afresh if its folder holds other settings",
    )
    add_arguments(p, RecipeConfig, verbose=2)  # --seed, --verbose, --strategy, --mixed-precision
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
