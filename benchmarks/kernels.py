"""Our layers and models against TensorFlow's fused kernels and plain-Keras
graphs, and each TFLite file at any size against the fixed-size one.

    python benchmarks/kernels.py            # the README's speed ratios (about 15 min on 2 cores)
    python benchmarks/kernels.py --quick    # small sizes, a smoke run
    python benchmarks/kernels.py --parts layers models   # some parts only (printed, not saved)
    python benchmarks/kernels.py --parts tflite --only MNC --builtin-tf
        # also TensorFlow with the builtin (TFLite) formulations: what the fused kernels save

Everything is measured side by side in one process, the two contenders in
turns (ours, the alternative, ours, ...), so that a machine's drift hits
both alike; each figure is a median. The ratio (ours / alternative, or
fixed / dynamic size) is what carries over to other machines. Results go
to stdout and to benchmarks/kernels.md.

- layers (TensorFlow): `RoIAlign` against `tf.image.crop_and_resize` at
  twice the size plus a 2x2 average; the affine sampler against
  `ImageProjectiveTransformV3`; `MaxPoolingWithArgmax2D` against
  `tf.nn.max_pool_with_argmax`; pooling plus `MaxUnpooling2D` against
  `max_pool_with_argmax` plus `tf.scatter_nd`. Each also with the builtin
  formulation that the TFLite trace gets, for reference.
- models (TensorFlow): FCN-8s against a plain Keras FCN-8s on
  `keras.applications.VGG16`; DeconvNet against the same graph built from
  `keras.layers.Conv2DTranspose`, `max_pool_with_argmax` and `scatter_nd`.
- tflite: FCN-8s, DeconvNet, the multiscale ConvNet, MNC (light backbone)
  and the soft-attention captioner, exported for any image size and for a
  fixed one, against the same serving function in TensorFlow.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from timing import machine, report, side_by_side


def row(what, ours, alternative, name):
    return f"| {what} | {ours:.1f} | {name} | {alternative:.1f} | {ours / alternative:.2f} |"


def builtin(fn):
    """`fn`, traced with the builtin (TFLite) formulations."""
    import tensorflow as tf

    from keras_segattn.core.kernels import tflite_builtins_only

    with tflite_builtins_only():
        traced = tf.function(fn).get_concrete_function()
    return traced


def scatter_unpool(values, indices, reference):
    """Unpooling by `tf.scatter_nd` of `max_pool_with_argmax` indices (with
    the batch in the index): the alternative to `MaxUnpooling2D`."""
    import tensorflow as tf

    size = tf.size(reference, out_type=tf.int64)
    flat = tf.scatter_nd(tf.reshape(indices, [-1, 1]), tf.reshape(values, [-1]), [size])
    return tf.reshape(flat, tf.shape(reference))


def layer_rows(quick, repeats):
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow
    from keras_segattn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D, roi_align
    from keras_segattn.layers.spatial_transformer import sample_affine

    rng = np.random.default_rng(0)
    rows = []

    # RoIAlign: 300 boxes on a 38x50x512 map, 14x14 bins of 2x2 samples.
    channels, num_boxes = (64, 50) if quick else (512, 300)
    features = tf.constant(rng.normal(size=(1, 38, 50, channels)).astype("float32"))
    corners = rng.uniform(0, 500, (1, num_boxes, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(16, 300, (1, num_boxes, 2))], -1)
    boxes = tf.constant(boxes.astype("float32"))
    ours = tf.function(in_tensorflow(lambda: roi_align(features, boxes, 14, 2, 1 / 16)))
    gathers = builtin(lambda: roi_align(features, boxes, 14, 2, 1 / 16))
    # The same samples (aligned: pixel / 16 - 0.5), as crop_and_resize
    # places them: 28 from the first to the last, normalised by size - 1.
    scaled = boxes[0] / 16 - 0.5
    start = tf.stack([scaled[:, 1], scaled[:, 0]], 1)
    length = tf.stack([scaled[:, 3], scaled[:, 2]], 1) - start
    first, last = (start + k * length / 28 for k in (0.5, 27.5))
    crops = tf.concat([first, last], 1) / [37.0, 49.0, 37.0, 49.0]
    fused = tf.function(
        lambda: tf.nn.avg_pool2d(
            tf.image.crop_and_resize(features, crops, tf.zeros([num_boxes], tf.int32), [28, 28]),
            2,
            2,
            "VALID",
        )
    )
    t = side_by_side([ours, fused, gathers], repeats)
    rows.append(
        row(
            f"`roi_align`, {num_boxes} boxes, 14x14, {channels} channels",
            t[0],
            t[1],
            "`crop_and_resize` 28x28 + 2x2 average",
        )
    )
    rows.append(row("  the builtin (TFLite) formulation, in TF", t[2], t[1], "the same"))

    # The affine sampler: 256 images of 60x60.
    count = 32 if quick else 256
    images = tf.constant(rng.random((count, 60, 60, 1)).astype("float32"))
    theta = np.tile([1.0, 0, 0, 0, 1, 0], (count, 1)) + rng.normal(0, 0.1, (count, 6))
    theta = tf.constant(theta.astype("float32"))
    from keras_segattn.layers.spatial_transformer import _affine_pixel_transform

    transform = _affine_pixel_transform(theta, (60, 60), (60, 60))
    ours = tf.function(in_tensorflow(lambda: sample_affine(images, theta, 60, 60)))
    gathers = builtin(lambda: sample_affine(images, theta, 60, 60))
    fused = tf.function(
        lambda: tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transform,
            output_shape=[60, 60],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
    )
    t = side_by_side([ours, fused, gathers], repeats)
    rows.append(row(f"affine sampler, {count} x 60x60", t[0], t[1], "`ImageProjectiveTransformV3`"))
    rows.append(row("  the builtin (TFLite) formulation, in TF", t[2], t[1], "the same"))

    # Pooling with switches, and unpooling: 8x112x112x128.
    shape = (2, 56, 56, 32) if quick else (8, 112, 112, 128)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    pool, unpool = MaxPoolingWithArgmax2D(), MaxUnpooling2D()
    ours = tf.function(in_tensorflow(lambda: pool(x)))
    gathers = builtin(lambda: pool(x))
    fused = tf.function(lambda: tf.nn.max_pool_with_argmax(x, 2, 2, "VALID"))
    t = side_by_side([ours, fused, gathers], repeats)
    size = "x".join(map(str, shape))
    rows.append(row(f"`MaxPoolingWithArgmax2D`, {size}", t[0], t[1], "`max_pool_with_argmax`"))
    rows.append(row("  the builtin (TFLite) formulation, in TF", t[2], t[1], "the same"))

    def fused_pair():
        pooled, argmax = tf.nn.max_pool_with_argmax(x, 2, 2, "VALID", include_batch_in_index=True)
        return scatter_unpool(pooled, argmax, x)

    ours = tf.function(in_tensorflow(lambda: unpool([*pool(x), x])))
    fused = tf.function(fused_pair)
    t = side_by_side([ours, fused], repeats)
    rows.append(
        row(f"pooling + unpooling, {size}", t[0], t[1], "`max_pool_with_argmax` + `scatter_nd`")
    )
    return rows


def plain_fcn8s(num_classes):
    """FCN-8s written the plain Keras way, on `keras.applications.VGG16`."""
    import keras

    layers = keras.layers
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    pool3, pool4 = (vgg.get_layer(f"block{i}_pool").output for i in (3, 4))
    x = layers.Conv2D(4096, 7, padding="same", activation="relu")(vgg.output)
    x = layers.Conv2D(4096, 1, activation="relu")(x)
    x = layers.Conv2D(num_classes, 1)(x)
    x = layers.Conv2DTranspose(num_classes, 4, 2, padding="same", use_bias=False)(x)
    x = layers.Add()([x, layers.Conv2D(num_classes, 1)(pool4)])
    x = layers.Conv2DTranspose(num_classes, 4, 2, padding="same", use_bias=False)(x)
    x = layers.Add()([x, layers.Conv2D(num_classes, 1)(pool3)])
    x = layers.Conv2DTranspose(num_classes, 16, 8, padding="same", use_bias=False)(x)
    return keras.Model(vgg.input, layers.Softmax()(x))


def plain_deconvnet(model):
    """`model` (a DeconvNet) rebuilt from `keras.layers.Conv2DTranspose`, and
    pooling and unpooling by `max_pool_with_argmax` and `scatter_nd`."""
    import keras
    import tensorflow as tf

    from keras_segattn.layers import (
        MaxPoolingWithArgmax2D,
        MaxUnpooling2D,
        StrideOneConv2DTranspose,
    )

    class ArgmaxPool(keras.layers.Layer):
        def call(self, x):
            return tf.nn.max_pool_with_argmax(x, 2, 2, "VALID", include_batch_in_index=True)

        def compute_output_spec(self, x):
            shape = (x.shape[0], None, None, x.shape[3])
            return keras.KerasTensor(shape, x.dtype), keras.KerasTensor(shape, "int64")

    class ScatterUnpool(keras.layers.Layer):
        def call(self, inputs):
            return scatter_unpool(*inputs)

        def compute_output_spec(self, inputs):
            return keras.KerasTensor(inputs[2].shape, inputs[0].dtype)

    def replace(layer):
        if isinstance(layer, MaxPoolingWithArgmax2D):
            return ArgmaxPool(name=layer.name)
        if isinstance(layer, MaxUnpooling2D):
            return ScatterUnpool(name=layer.name)
        if isinstance(layer, StrideOneConv2DTranspose):
            return keras.layers.Conv2DTranspose.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    plain = keras.models.clone_model(model, clone_function=replace)
    plain.set_weights(model.get_weights())
    return plain


def model_rows(quick, repeats):
    import tensorflow as tf

    from keras_segattn.core.kernels import in_tensorflow
    from keras_segattn.models import create_model

    rng = np.random.default_rng(0)
    rows = []
    width, size = (0.25, (96, 128)) if quick else (1.0, (352, 480))
    ours = create_model("fcn8s", num_classes=11, width=width)
    plain = plain_fcn8s(11) if not quick else None
    images = rng.integers(0, 256, (1, *size, 3)).astype("uint8")
    ours_fn = tf.function(in_tensorflow(lambda: ours(images, training=False)))
    if plain is not None:
        floats = tf.constant(images.astype("float32"))
        plain_fn = tf.function(lambda: plain(floats, training=False))
        t = side_by_side([ours_fn, plain_fn], repeats)
        rows.append(
            row(
                f"FCN-8s width {width}, {size[0]}x{size[1]}",
                t[0],
                t[1],
                "plain Keras FCN-8s on `keras.applications.VGG16`",
            )
        )

    size = (64, 64) if quick else (224, 224)
    ours = create_model("deconvnet", num_classes=11, width=width)
    plain = plain_deconvnet(ours)
    images = rng.integers(0, 256, (1, *size, 3)).astype("uint8")
    ours_fn = tf.function(in_tensorflow(lambda: ours(images, training=False)))
    plain_fn = tf.function(in_tensorflow(lambda: plain(images, training=False)))
    t = side_by_side([ours_fn, plain_fn], repeats)
    rows.append(
        row(
            f"DeconvNet width {width}, {size[0]}x{size[1]}",
            t[0],
            t[1],
            "the same graph with `Conv2DTranspose`, `max_pool_with_argmax`, `scatter_nd`",
        )
    )
    return rows


def tflite_cases(quick):
    """(label, builder, task, signature, size)."""
    from keras_segattn.models import create_model
    from keras_segattn.models.instance import COCO_LIGHT_MNC

    width = 0.25 if quick else 1.0
    words = ["<pad>", "<unk>", "<start>", "<end>"] + [f"w{i}" for i in range(996)]
    small = (
        dict(image_size=(64, 64), units=64, embedding_dim=32, attention_units=32, max_length=8)
        if quick
        else {}
    )
    return [
        (
            f"FCN-8s width {width}",
            lambda: create_model("fcn8s", num_classes=11, width=width),
            "semantic",
            "serving_default",
            (96, 128) if quick else (352, 480),
        ),
        (
            f"DeconvNet width {width}",
            lambda: create_model("deconvnet", num_classes=11, width=width),
            "semantic",
            "serving_default",
            (64, 64) if quick else (224, 224),
        ),
        (
            f"multiscale ConvNet width {width}",
            lambda: create_model("multiscale_convnet", num_classes=11, width=width),
            "semantic",
            "serving_default",
            (96, 128) if quick else (360, 480),
        ),
        (
            "MNC, light backbone, 81 classes",
            lambda: create_model("mnc", **{**COCO_LIGHT_MNC, "num_classes": 81}),
            "instance",
            "serving_default",
            (128, 128) if quick else (256, 256),
        ),
        (
            "soft-attention captioner, 1000 words",
            lambda: create_model("show_attend_tell", vocabulary=words, **small),
            "captioning",
            "tokens",
            (64, 64) if quick else (224, 224),
        ),
    ]


def tflite_rows(quick, repeats, only=None, builtin_tf=False):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_segattn.core.kernels import in_tensorflow, tflite_builtins_only
    from keras_segattn.export import convert_to_tflite
    from keras_segattn.tasks import get_task

    rng = np.random.default_rng(0)
    rows = []
    for label, build, task, signature, size in tflite_cases(quick):
        if only and only not in label:
            continue
        model = build()
        serve = get_task(task).serving_function(model, signature)
        images = rng.integers(0, 256, (1, *size, 3)).astype("uint8")
        in_tf = tf.function(in_tensorflow(serve))
        runners = []
        with tempfile.TemporaryDirectory() as directory:
            for fixed in (None, size):
                path = os.path.join(directory, f"{fixed}.tflite")
                convert_to_tflite(model, path, task=task, signature_key=signature, input_size=fixed)
                interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
                runners.append(interpreter.get_signature_runner(signature))
        calls = [lambda f=in_tf, x=images: f(x)]
        calls += [lambda r=r, x=images: r(images=x) for r in runners]
        if builtin_tf:
            with tflite_builtins_only():
                traced = tf.function(serve).get_concrete_function(
                    tf.TensorSpec(images.shape, tf.uint8)
                )
            calls.append(lambda f=traced, x=images: f(x))
        t = side_by_side(calls, repeats)
        rows.append(
            f"| {label}, {size[0]}x{size[1]} | {t[0]:.0f} | {t[1]:.0f} | {t[2]:.0f} "
            f"| {t[2] / t[1]:.2f} | {t[2] / t[0]:.2f} |" + (f" {t[3]:.0f} |" if builtin_tf else "")
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["layers", "models", "tflite"],
        default=["layers", "models", "tflite"],
    )
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--only", help="TFLite rows whose model label contains this")
    parser.add_argument(
        "--builtin-tf",
        action="store_true",
        help="TFLite rows: also TensorFlow with the builtin formulations",
    )
    args = parser.parse_args()
    partial = set(args.parts) != {"layers", "models", "tflite"} or args.only or args.builtin_tf
    repeats = args.repeats or (2 if args.quick else 7)
    lines = [f"Machine: {machine()}; medians of {repeats}, side by side in one process.", ""]
    header = "| what | ours (ms) | the alternative | its time (ms) | ratio |\n|---|---|---|---|---|"
    if "layers" in args.parts:
        lines += ["TensorFlow, layers:", "", header, *layer_rows(args.quick, repeats), ""]
    if "models" in args.parts:
        lines += ["TensorFlow, models (batch 1):", "", header, *model_rows(args.quick, repeats), ""]
    if "tflite" in args.parts:
        lines += [
            "TFLite (XNNPACK, all cores) against the same serving function in TensorFlow, "
            "batch 1, uint8 images in:",
            "",
            "| model | TensorFlow (ms) | TFLite, any size (ms) | TFLite, fixed size (ms) "
            "| fixed / any | fixed / TensorFlow |"
            + (" TensorFlow, builtin formulations (ms) |" if args.builtin_tf else ""),
            "|---|---|---|---|---|---|" + ("---|" if args.builtin_tf else ""),
            *tflite_rows(args.quick, repeats, args.only, args.builtin_tf),
            "",
        ]
    report(lines, "kernels.md", args.quick or partial)


if __name__ == "__main__":
    main()
