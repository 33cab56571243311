"""The captioning life cycle: Show, Attend and Tell from captions to scores.

`train_captioner` is what `segattn caption-train` runs: vocabulary from the
training captions, `model.fit` with teacher forcing on `tf.data`, the best
checkpoint by validation loss, then `evaluate_captioner`
(`keras_segattn.evaluation.captioning`) on held-out images (greedy or beam
search, BLEU / METEOR / CIDEr, and on the built-in shapes the
attention-localisation score), all in the shared run folder.
"""

import dataclasses

import keras

from keras_segattn.core.validation import check_int
from keras_segattn.data.captions import (
    CaptionVocabulary,
    caption_pipeline,
    load_caption_dataset,
    shapes_caption_objects,
)
from keras_segattn.data.epochs import batches_per_epoch
from keras_segattn.data.pipeline import generation_options, is_generated
from keras_segattn.data.shapes import CLASS_NAMES
from keras_segattn.evaluation.captioning import evaluate_captioner
from keras_segattn.models.captioning import CaptionLoss
from keras_segattn.models.registry import GENERATED_PRESET, create_model, get_model_spec
from keras_segattn.recipes.config import RecipeConfig, option
from keras_segattn.recipes.distribute import is_chief, training_context
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.schedules import SCHEDULES, per_step
from keras_segattn.tasks import fit_epochs, task_of

# The light captioner the package trains on the built-in shapes, kept with
# its family as the preset "shapes" (`create_model(..., preset="shapes")`).
SHAPES_MODEL = get_model_spec("show_attend_tell").presets[GENERATED_PRESET]


def _spec_kwargs(data, split, num_images, image_size):
    """Generated data: `num_images` training images, a tenth of them (at
    least 50) held out."""
    count = num_images if split == "train" else max(50, num_images // 10)
    return generation_options(data, num_images=count, image_size=image_size)


def _captions_of(dataset):
    captions = []
    for example in dataset:
        captions.extend(c.decode() for c in example["captions"].numpy())
    return captions


def check_references(dataset, split):
    """Refuses, before any training, a split with an image whose captions are
    all empty: it has nothing to score a caption against.

    Raises:
        ValueError: naming the split and the image.
    """
    for index, example in enumerate(dataset.map(lambda e: {k: e[k] for k in e if k != "images"})):
        if not any(c.decode().strip() for c in example["captions"].numpy()):
            image = int(example["image_id"]) if "image_id" in example else index
            raise ValueError(
                f"the {split!r} split has an image without a non-empty caption (image "
                f"{image}); every image scored needs at least one reference."
            )


@dataclasses.dataclass
class CaptionerConfig(RecipeConfig):
    """The arguments of `train_captioner` (`segattn caption-train`)."""

    POSITIONAL = ("data",)

    data: str = option("shapes", "shapes | coco:<root> | flickr8k:<root> | tfds:coco_captions")
    attention: str = option(
        "soft", "soft (deterministic) or hard (sampled) attention", choices=("soft", "hard")
    )
    encoder: str = option("light", "the CNN encoder", choices=("light", "vgg16"))
    image_size: int = option(64, "side of the square images the model sees")
    epochs: int = option(20, "passes over the training captions")
    batch_size: int = option(32, "the global batch")
    max_length: int = option(16, "tokens per caption, <end> included")
    num_images: int = option(
        2000, "training images of a generated dataset (a tenth, at least 50, held out)"
    )
    learning_rate: float = option(1e-3, "Adam's learning rate")
    schedule: str = option(
        "constant",
        "the learning rate over the run's steps: constant, cosine (decayed to 0) or step (/10 "
        "after 1/3 and 2/3)",
        choices=SCHEDULES,
    )
    output: str = option("runs/caption", "the run folder")
    val_split: str = option("val", "the split that picks best.keras (validation loss)")
    eval_split: str = option("test", "the split scored at the end")
    beam_width: int = option(3, "beam search width of the final scores (1: greedy)")
    model_kwargs: dict = option(
        {},
        "another show_attend_tell argument, e.g. units=512 (on generated data, over "
        "its preset 'shapes'); repeatable",
        flag="--model-arg",
    )
    verbose: int = option(2, "1 a progress bar, 2 one line an epoch, 0 silent")


def train_captioner(*config, callbacks=None, overwrite=False, **arguments):
    """Trains a captioner, keeps the best checkpoint, evaluates it.

    Args:
        *config: a `CaptionerConfig` (which `arguments` may change), or its
            `data` by position. Its fields: `data` (a caption dataset
            spec), `attention` (`"soft"` or `"hard"`), `encoder`
            (`"light"` or `"vgg16"`), `image_size` (side of the square
            images the model sees), `epochs`, `batch_size`,
            `learning_rate` (Adam), `schedule` (of the rate over the run's
            steps: `"constant"`, `"cosine"` or `"step"`, as
            `recipes.schedules.per_step`), `max_length` (tokens per caption,
            `<end>` included), `num_images` (training images of generated
            data; a tenth, at least 50, held out), `output`, `val_split`,
            `eval_split`, `beam_width` (of the evaluation; 1 is greedy),
            `seed`, `model_kwargs` (more `show_attend_tell` arguments; on
            generated data over its preset `"shapes"`), `verbose`,
            `strategy` and `mixed_precision` (as `train_segmenter`'s: the
            other workers of a multi-worker run return `None`).
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.
        overwrite: bool. Start afresh in `output` (see `RunFolder.start`).
        **arguments: `CaptionerConfig` fields.

    Returns:
        The metrics dict written to `output/metrics.json`.
    """
    config = CaptionerConfig.make(*config, **arguments)
    data, output, image_size = config.data, config.output, config.image_size
    num_images, seed = config.num_images, config.seed
    task = task_of("show_attend_tell")
    epochs = check_int(config.epochs, "epochs", hint=" (0 would score an untrained model)")
    with training_context(
        config.strategy, config.mixed_precision, seed, config.deterministic
    ) as distribution:
        run = RunFolder(output, chief=is_chief(distribution))
        finished = run.start(
            {**config.record(), "task": task.name},
            overwrite=overwrite,
            config_class=CaptionerConfig,
        )
        if finished is not None:
            print(f"{output} holds this run, finished (pass --overwrite to train it again).")
            return finished
        size = (image_size, image_size)
        train, val = (
            load_caption_dataset(data, split, **_spec_kwargs(data, split, num_images, size))[0]
            for split in ("train", config.val_split)
        )
        train, val = train.cache(), val.cache()
        test, _ = load_caption_dataset(
            data, config.eval_split, **_spec_kwargs(data, config.eval_split, num_images, size)
        )
        for split, dataset in ((config.val_split, val), (config.eval_split, test)):
            check_references(dataset, split)
        vocabulary = CaptionVocabulary.build(_captions_of(train))
        vocabulary.save(run.file("vocabulary.json"))
        model = create_model(
            "show_attend_tell",
            preset=GENERATED_PRESET if is_generated(data) else None,
            vocabulary=vocabulary.words,
            encoder=config.encoder,
            image_size=size,
            attention=config.attention,
            max_length=config.max_length,
            **(config.model_kwargs or {}),
        )
        pipeline = dict(
            vocabulary=vocabulary,
            batch_size=config.batch_size,
            image_size=size,
            max_length=config.max_length + 1,
        )

        def one_epoch(epoch):  # the captions drawn and the order: `seed + epoch`
            return caption_pipeline(train, shuffle=1024, seed=seed + epoch, **pipeline)

        steps = batches_per_epoch(one_epoch)
        rate = per_step(config.schedule, config.learning_rate, steps * epochs)
        model.compile(keras.optimizers.Adam(rate), loss=CaptionLoss())

        val_batches = caption_pipeline(val, one_caption_per_image="all", **pipeline)
        fit_epochs(
            model,
            one_epoch,
            epochs,
            run.callbacks(task.monitor, task.mode) + list(callbacks or []),
            resume_epoch=run.resume_epoch(),
            steps_per_epoch=steps,
            validation_data=val_batches,
            verbose=config.verbose,
        )
    if not run.finish_training(model):
        return None  # another worker than the chief
    train_seconds = run.training_seconds()  # the epochs of every sitting

    best_model = run.best_model(model)
    metrics = evaluate_captioner(
        best_model, test, beam_width=config.beam_width, **shapes_objects(data)
    )
    metrics.update(
        data=data,
        attention=config.attention,
        encoder=config.encoder,
        image_size=image_size,
        epochs=epochs,
        train_images=num_images if is_generated(data) else None,
        beam_width=config.beam_width,
        train_seconds=round(train_seconds, 1),
        vocabulary_size=len(vocabulary.words),
    )
    run.write_metrics(metrics)
    return metrics


def shapes_objects(data):
    """`evaluate_captioner`'s `objects` and `nouns` for the built-in shapes
    (which know where each named object is); none for other data."""
    if not is_generated(data):
        return {}
    return {"objects": shapes_caption_objects, "nouns": CLASS_NAMES[1:]}
