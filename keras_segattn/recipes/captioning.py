"""The captioning life cycle: Show, Attend and Tell from captions to scores.

`train_captioner` is what `segattn caption-train` runs: vocabulary from the
training captions, `model.fit` with teacher forcing on `tf.data`, the best
checkpoint by validation loss, then `evaluate_captioner`
(`keras_segattn.evaluation.captioning`) on held-out images (greedy or beam
search, BLEU / METEOR / CIDEr, and on the built-in shapes the
attention-localisation score), all in the shared run folder.
"""

import keras

from keras_segattn.core.validation import check_int
from keras_segattn.data.captions import (
    CaptionVocabulary,
    caption_pipeline,
    load_caption_dataset,
    shapes_caption_objects,
)
from keras_segattn.data.shapes import CLASS_NAMES
from keras_segattn.evaluation.captioning import evaluate_captioner
from keras_segattn.models.captioning import CaptionLoss
from keras_segattn.models.registry import create_model
from keras_segattn.recipes.distribute import is_chief, strategy_name, training_context
from keras_segattn.recipes.runs import RunFolder

# A light captioner for CPU training on the built-in shapes (64x64 images).
# Three stages give a 16x16 grid of 128-d annotations whose cells see 18x18
# pixels, about one shape: with the 8x8 grid of four stages every cell saw
# 38x38 pixels, most of the image, and the decoder could name a shape
# without attending to it (README, "Show, Attend and Tell"). No doubly
# stochastic penalty: the steps whose words do not need the image (the
# decoder reads an object a step ahead) are what it moves, and it moves
# them onto the cells the caption has looked at least: the background.
SHAPES_MODEL = {
    "encoder_filters": (32, 64, 128),
    "embedding_dim": 64,
    "units": 256,
    "attention_units": 128,
    "dropout": 0.2,
    "doubly_stochastic": 0.0,
}


def _spec_kwargs(data, split, num_images, image_size):
    if data != "shapes":
        return {}
    count = num_images if split == "train" else max(50, num_images // 10)
    return {"num_images": count, "image_size": image_size}


def _captions_of(dataset):
    captions = []
    for example in dataset:
        captions.extend(c.decode() for c in example["captions"].numpy())
    return captions


def train_captioner(
    data="shapes",
    attention="soft",
    encoder="light",
    image_size=64,
    epochs=20,
    batch_size=32,
    max_length=16,
    num_images=2000,
    learning_rate=1e-3,
    output="runs/caption",
    val_split="val",
    eval_split="test",
    beam_width=3,
    seed=0,
    model_kwargs=None,
    verbose=2,
    strategy="auto",
    mixed_precision=None,
    callbacks=None,
    config=None,
    overwrite=False,
):
    """Trains a captioner, keeps the best checkpoint, evaluates it.

    Args:
        data: str. A caption dataset spec (`"shapes"`, `"coco:<root>"`,
            `"flickr8k:<root>"`, `"tfds:coco_captions"`).
        attention: str. `"soft"` or `"hard"`.
        encoder: str. `"light"` or `"vgg16"`.
        image_size: int. Side of the square images the model sees.
        epochs, batch_size, learning_rate: the `fit` schedule (Adam).
        max_length: int. Tokens per caption, `<end>` included.
        num_images: int. Training images of `"shapes"` (a tenth as many,
            at least 50, for validation and test).
        output: str. Folder for checkpoints, logs, `metrics.json`.
        val_split, eval_split: str. Splits for checkpoint selection and
            the final scores.
        beam_width: int. Beam search width of the evaluation (1: greedy).
        seed: int. Seed of weights, shuffling and hard attention.
        model_kwargs: dict. More `show_attend_tell` arguments; for shapes
            the light `SHAPES_MODEL` is the default.
        verbose: int. `fit` verbosity.
        strategy, mixed_precision, callbacks: as `train_segmenter`'s (the
            other workers of a multi-worker run return `None`).
        config: dict or `None`. What `run.json` records (the CLI's
            arguments); defaults to this call's arguments.
        overwrite: bool. Start afresh in `output` (see `RunFolder.start`).

    Returns:
        The metrics dict written to `output/metrics.json`.
    """
    arguments = {k: v for k, v in locals().items() if k not in ("config", "overwrite", "callbacks")}
    arguments["strategy"] = strategy_name(strategy)
    epochs = check_int(epochs, "epochs", hint=" (0 would score an untrained model)")
    with training_context(strategy, mixed_precision) as distribution:
        keras.utils.set_random_seed(seed)
        run = RunFolder(output, chief=is_chief(distribution))
        finished = run.start(config if config is not None else arguments, overwrite=overwrite)
        if finished is not None:
            print(f"{output} holds this run, finished (pass --overwrite to train it again).")
            return finished
        size = (image_size, image_size)
        train, val = (
            load_caption_dataset(data, split, **_spec_kwargs(data, split, num_images, size))
            for split in ("train", val_split)
        )
        train, val = train.cache(), val.cache()
        vocabulary = CaptionVocabulary.build(_captions_of(train))
        vocabulary.save(run.file("vocabulary.json"))
        kwargs = dict(SHAPES_MODEL if data == "shapes" else {})
        kwargs.update(model_kwargs or {})
        model = create_model(
            "show_attend_tell", vocabulary=vocabulary.words, encoder=encoder, image_size=size,
            attention=attention, max_length=max_length, **kwargs,
        )  # fmt: skip
        model.compile(keras.optimizers.Adam(learning_rate), loss=CaptionLoss())
        pipeline = dict(vocabulary=vocabulary, batch_size=batch_size, image_size=size,
                        max_length=max_length + 1)  # fmt: skip
        train_batches = caption_pipeline(train, shuffle=1024, seed=seed, **pipeline)
        val_batches = caption_pipeline(val, one_caption_per_image="all", **pipeline)
        callbacks = run.callbacks(monitor="val_loss", mode="min") + list(callbacks or [])
        model.fit(
            train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks,
            verbose=verbose, shuffle=False,  # the pipeline shuffles (Keras warns otherwise)
        )  # fmt: skip
    if not run.finish_training(model):
        return None  # another worker than the chief
    train_seconds = run.training_seconds()  # the epochs of every sitting

    best_model = run.best_model(model)
    test = load_caption_dataset(
        data, eval_split, **_spec_kwargs(data, eval_split, num_images, size)
    )
    metrics = evaluate_captioner(best_model, test, beam_width=beam_width, **shapes_objects(data))
    metrics.update(
        data=data, attention=attention, encoder=encoder, image_size=image_size, epochs=epochs,
        train_images=num_images if data == "shapes" else None, beam_width=beam_width,
        train_seconds=round(train_seconds, 1), vocabulary_size=len(vocabulary.words),
    )  # fmt: skip
    run.write_metrics(metrics)
    return metrics


def shapes_objects(data):
    """`evaluate_captioner`'s `objects` and `nouns` for the built-in shapes
    (which know where each named object is); none for other data."""
    if data != "shapes":
        return {}
    return {"objects": shapes_caption_objects, "nouns": CLASS_NAMES[1:]}
