"""The `segattn` command: train, evaluate, predict, export and the demo.

Argument parsing and printing only: every command calls one function of
`keras_segattn.recipes`, `keras_segattn.evaluation` or `keras_segattn.export`,
or asks a loaded model's task (`keras_segattn.tasks.task_of`) what to do with
it. Nothing in the package imports this module.
"""

import argparse
import dataclasses
import os
import sys
import typing

import numpy as np

from keras_segattn.core.options import REQUIRED, Options, add_arguments, option
from keras_segattn.core.validation import optional_size
from keras_segattn.recipes.config import RecipeConfig
from keras_segattn.tasks import EvaluateOptions


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


def train(config, overwrite):
    from keras_segattn.recipes.semantic import train_segmenter

    return train_segmenter(config, overwrite=overwrite)


def _image_size(image_size, model_path):
    """`--image-size`, else the size the model's run trained at (`run.json`)."""
    from keras_segattn.checkpoints import read_run_config

    run = read_run_config(model_path)
    return optional_size(image_size, "--image-size") or optional_size(
        run.get("image_size"), "image_size of run.json"
    )


@dataclasses.dataclass(kw_only=True)
class Evaluate(EvaluateOptions):
    model_path: str = option(REQUIRED, "the .keras file scored")
    output: str | None = option(None, "also write the scores to this JSON file")


def evaluate(options):
    model, task = _load(options.model_path)
    image_size = _image_size(options.image_size, options.model_path)
    asked = EvaluateOptions(**options.fields(leave_out=("model_path", "output")))
    scores, lines = task.evaluate(model, asked.replace(image_size=image_size))
    print(*lines, sep="\n")
    summary = options.fields("model_path", "data", "split")
    _write_scores(options.output, {**summary, "image_size": image_size, **scores})
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


@dataclasses.dataclass(kw_only=True)
class Predict(Options):
    model_path: str = option(REQUIRED, "the .keras file")
    images: list = option(REQUIRED, "image files")
    output_dir: str = option("predictions", "the folder of the overlay PNGs")
    image_size: tuple | None = option(
        None, "H [W]: the size images are labelled at (default: the run's training size)"
    )


def predict(options):
    from keras_segattn.evaluation import predict_scores
    from keras_segattn.viz import label_palette, save_panels

    model, task = _load(options.model_path)
    model = task.draw(model)  # per-pixel scores (a patch classifier's dense labeller)
    folder = _output_dir(options.output_dir)
    image_size = _image_size(options.image_size, options.model_path)
    palette = label_palette(model.output.shape[-1])
    written = []
    for path, name in zip(options.images, output_names(options.images, "_overlay.png")):
        image = read_image(path)
        scores = predict_scores(model, image[None], image_size)
        class_map = np.argmax(np.asarray(scores)[0], axis=-1)
        written.append(save_panels(os.path.join(folder, name), image, class_map, palette))
    print("wrote", *written, sep="\n  ")
    return written


@dataclasses.dataclass(kw_only=True)
class Export(Options):
    model_path: str = option(REQUIRED, "the .keras file exported")
    output: str = option("saved_models", "the TF Serving base folder")
    name: str | None = option(None, "the model's folder (default: the run's model name)")
    version: int = option(1, "the TF Serving version")
    tflite: list = option(
        ["float32"],
        "the TFLite files written, one a quantization (none: no TFLite file)",
        choices=["float32", "float16", "dynamic", "int8"],
        nargs="*",
    )
    data: str | None = option(
        None,
        "images for int8 calibration and the parity check: a dataset spec (semantic models; "
        "default the training data) or an MNIST source",
    )
    tflite_size: tuple | None = option(
        None,
        "also write TFLite files at this fixed image size "
        "(<name>_v<version>_<H>x<W>[_<quantization>].tflite), which XNNPACK runs whole",
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
    )
    keras_file: bool = option(
        False,
        "also write the Keras model (no optimizer state) and its run's arguments "
        "(<name>_v<version>.keras, .run.json): what predict, caption and evaluate load",
        flag="--keras",
    )
    onnx: bool = option(
        False,
        "also write <name>_v<version>.onnx (the TFLite file's signature, through tf2onnx; needs "
        "pip install keras_segattn[onnx]), verified in onnxruntime",
    )
    max_pixels: int | None = option(
        None,
        "the most pixels (height x width) of one image served (default 2048x2048); larger ones "
        "are refused by index before they are decoded",
    )
    max_batch_pixels: int | None = option(
        None,
        "the most pixels of one request, its images padded to the largest (default 2 x 2048x2048)",
    )


def export(options):
    from keras_segattn.export import export_checkpoint

    return export_checkpoint(options.model_path, **options.fields(leave_out=("model_path",)))


def instance_train(config, overwrite):
    from keras_segattn.recipes.instance import train_instances

    summary = train_instances(config, overwrite=overwrite)
    if summary is None:  # another worker than the chief
        return None
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP"):
        if key in summary:
            print(f"{key:<10} {summary[key]:.3f}")
    print(f"trained in {summary['train_seconds']:.0f} s; model and metrics in {config.output}")
    return summary


def caption_train(config, overwrite):
    from keras_segattn.recipes.captioning import train_captioner

    metrics = train_captioner(config, overwrite=overwrite)
    if metrics is None:  # another worker than the chief
        return None
    print_caption_report(metrics)
    print(f"\ntrained in {metrics['train_seconds']:.0f} s; checkpoints, metrics in {config.output}")
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


@dataclasses.dataclass(kw_only=True)
class CaptionEvaluate(Options):
    model_path: str = option(REQUIRED, "the captioner's .keras file")
    data: str = option(REQUIRED, "the dataset spec scored (shapes, coco:<folder>)")
    split: str = option("test", "the split scored")
    num_images: int = option(400, "images of 'shapes'")
    beam_width: int = option(3, "the beam search's width (1: greedy)")
    output: str | None = option(None, "also write the scores to this JSON file")


def caption_evaluate(options):
    from keras_segattn.data import generation_options, load_caption_dataset
    from keras_segattn.evaluation import evaluate_captioner
    from keras_segattn.recipes.captioning import shapes_objects

    model = _captioner(options.model_path)
    generation = generation_options(
        options.data, num_images=options.num_images, image_size=model.image_size
    )
    data, _ = load_caption_dataset(options.data, options.split, **generation)
    metrics = evaluate_captioner(
        model, data, beam_width=options.beam_width, **shapes_objects(options.data)
    )
    print_caption_report(metrics)
    _write_scores(options.output, metrics)
    return metrics


@dataclasses.dataclass(kw_only=True)
class Caption(Options):
    model_path: str = option(REQUIRED, "the captioner's .keras file")
    images: list = option(REQUIRED, "image files")
    beam_width: int = option(3, "the beam search's width (1: greedy)")
    output_dir: str = option("captions", "the folder of the attention figures")


def caption(options):
    from keras_segattn.viz import attention_figure

    model = _captioner(options.model_path)
    folder = _output_dir(options.output_dir)
    method = "greedy" if options.beam_width == 1 else "beam"
    written = []
    for path, name in zip(options.images, output_names(options.images, "_attention.png")):
        image = read_image(path)
        generated = model.generate(image[None], method=method, beam_width=options.beam_width)
        figure = attention_figure(
            model, image, os.path.join(folder, name), beam_width=options.beam_width
        )
        print(f"{path}: {generated['captions'][0]}")
        written.append(figure)
    print("wrote", *written, sep="\n  ")
    return written


@dataclasses.dataclass(kw_only=True)
class ScoreExport(Options):
    folder: str = option(
        REQUIRED, "a folder with a heldout.json, e.g. saved_models/st_cnn_rts", flag="folder"
    )
    images: int | None = option(None, "the first N held-out examples (default: all)")
    shared_data: str = option("../shared/data", "the data folder")


def score_export(options):
    from keras_segattn.recipes.served import score_shipped

    scores = score_shipped(options.folder, options.images, options.shared_data)
    for key, value in scores.items():
        print(f"{key:<16} {value:.4f}")
    return scores


@dataclasses.dataclass(kw_only=True)
class ListModels(Options):
    task: str | None = option(None, "only this task's models")


def list_registered(options):
    from keras_segattn.models import get_model_spec, list_models

    for name in list_models(options.task):
        spec = get_model_spec(name)
        print(f"{name:<12} {spec.task:<10} {spec.paper}")


@dataclasses.dataclass(kw_only=True)
class StnTable(RecipeConfig):
    rows: list = option(
        ["cnn", "st_cnn:affine", "st_cnn:tps"],
        "cnn, fcn, st_cnn:<affine|projective|tps>, st_fcn:<...>",
    )
    distortions: list = option(["R", "RTS"], "the table's columns", choices=["R", "RTS", "P", "E"])
    epochs: int = option(10, "passes over the 60,000 training digits")
    batch_size: int = option(128, "the global batch")
    learning_rate: float = option(1e-3, "the initial learning rate")
    optimizer: str = option("adam", "the optimizer (sgd: the paper's)", choices=["adam", "sgd"])
    momentum: float = option(0.9, "SGD's momentum")
    schedule: str = option(
        "cosine",
        "cosine to 0, or step: /10 after 1/3 and 2/3 of the steps (the paper's)",
        choices=["cosine", "step"],
    )
    source: str | None = option(
        None, "MNIST folder of IDX files, 'keras' or 'tfds'", flag="--mnist"
    )
    limit: int | None = option(None, "use only this many digits (smoke runs)")
    output: str = option("runs/stn", "the folder of the cells, one run folder each")
    overwrite: bool = option(False, "start a cell afresh if its folder holds other settings")
    verbose: int = option(2, "1 a progress bar, 2 one line an epoch, 0 silent")


def stn_table(options):
    from keras_segattn.recipes.stn import run_table

    cells = options.fields(leave_out=("rows", "distortions"))
    run_table(options.rows, options.distortions, **cells)


@dataclasses.dataclass(kw_only=True)
class StnFigure(Options):
    model_path: str = option(REQUIRED, "a cell's .keras file (a transformer row)")
    distortion: str = option("RTS", "the distortion drawn", choices=["R", "RTS", "P", "E"])
    output: str = option("docs/stn.png", "the PNG written")
    count: int = option(8, "digits drawn")
    source: str | None = option(
        None, "MNIST folder of IDX files, 'keras' or 'tfds'", flag="--mnist"
    )


def stn_figure(options):
    from keras_segattn.recipes.stn import transformer_figure

    path = transformer_figure(
        options.model_path, options.distortion, options.output, options.count, source=options.source
    )
    print("wrote", path)


@dataclasses.dataclass(kw_only=True)
class Demo(Options):
    output: str = option("saved_models", "where the exported model goes")
    quick: bool = option(False, "a few steps only (for tests)")


def demo(options):
    from keras_segattn.recipes.demo import run_demo

    return run_demo(options.output, quick=options.quick)


@dataclasses.dataclass(frozen=True)
class Command:
    """One `segattn` command: its options dataclass (the single source of
    its arguments) and the function it runs. A training command's function
    also takes `overwrite` (`--overwrite`, not part of the run's config)."""

    name: str
    options: type
    run: typing.Callable
    help: str
    trains: bool = False


def commands():
    """Every `segattn` command, in `--help`'s order."""
    from keras_segattn.recipes.captioning import CaptionerConfig
    from keras_segattn.recipes.instance import InstanceConfig
    from keras_segattn.recipes.semantic import SegmenterConfig

    return [
        Command("train", SegmenterConfig, train, "train a semantic segmentation model", True),
        Command(
            "evaluate",
            Evaluate,
            evaluate,
            "score a split: accuracy and IoU (semantic, patch_cnn densely); COCO mask AP and "
            "mAP^r (rpn, mnc, sds, hypercolumns)",
        ),
        Command("predict", Predict, predict, "write overlay PNGs for image files"),
        Command("export", Export, export, "SavedModel for TF Serving and TFLite files"),
        Command(
            "instance-train",
            InstanceConfig,
            instance_train,
            "train and score an instance model (rpn, mnc, sds, hypercolumns)",
            True,
        ),
        Command(
            "caption-train",
            CaptionerConfig,
            caption_train,
            "train and score a Show-Attend-Tell captioner",
            True,
        ),
        Command(
            "caption-evaluate",
            CaptionEvaluate,
            caption_evaluate,
            "BLEU/METEOR/CIDEr of a captioner",
        ),
        Command("caption", Caption, caption, "caption image files, one attention figure each"),
        Command(
            "score-export",
            ScoreExport,
            score_export,
            "score a shipped model's SavedModel on its held-out data",
        ),
        Command("models", ListModels, list_registered, "list the registered models"),
        Command("stn-table", StnTable, stn_table, "Spatial Transformer Networks' Table 1 on MNIST"),
        Command(
            "stn-figure", StnFigure, stn_figure, "distorted digits above the transformer's output"
        ),
        Command("demo", Demo, demo, "the main job: train, evaluate, export on built-in data"),
    ]


OVERWRITE_HELP = (
    "empty --output and train afresh (by default a finished run is reported, an interrupted one "
    "resumed, and a folder of another run refused)"
)


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` says each default, unless the help text does or there is
    none to say (a required argument, `None`, a switch)."""

    def _get_help_string(self, action):
        nothing = action.default is None or action.default is False
        if action.required or nothing or "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    """The `segattn` parser: one subcommand a `Command`, its arguments made
    from its options dataclass (`core.options.add_arguments`)."""
    parser = argparse.ArgumentParser(prog="segattn", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in commands():
        p = subparsers.add_parser(command.name, help=command.help, formatter_class=DefaultsHelp)
        add_arguments(p, command.options)
        if command.trains:
            p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        p.set_defaults(command=command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command
    try:
        options = command.options.from_arguments(args)
        extra = {"overwrite": args.overwrite} if command.trains else {}
        command.run(options, **extra)
    except (ValueError, TypeError, RuntimeError, ImportError) as error:
        # The package raises these for user mistakes, with a message that
        # names the argument; a traceback would only bury it.
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
