"""Captioning: Show, Attend and Tell."""

import tensorflow as tf

from keras_segattn.core.images import as_client_uint8, resize_image_uint8
from keras_segattn.data.captions import load_caption_dataset
from keras_segattn.data.pipeline import generation_options
from keras_segattn.evaluation.captioning import score_captions
from keras_segattn.tasks.base import Task, register_task


def captioning_tokens_serving_fn(model):
    """uint8 images of any size in; greedy `token_ids` and `attention` out.

    The numeric half of `captioning_serving_fn`, and what TFLite gets (the
    `"tokens"` signature): images are resized (bilinear) to
    `model.image_size` and decoded by `model.decode_greedy`, a Python loop
    unrolled over `max_length` steps, all builtin TFLite ops. `token_ids`
    int32 `(batch, max_length)` hold the words up to `<end>` included,
    then `<pad>` (0); `attention` float32 `(batch, max_length, grid_h,
    grid_w)` the weights of every generated word, zeros after `<end>`.
    """

    def serve(images):
        return model.decode_greedy(model.resize_images(images))

    return serve


def captioning_serving_fn(model):
    """uint8 images of any size in; `token_ids`, `attention`, `words`, `captions` out.

    `token_ids` and `attention` as in `captioning_tokens_serving_fn`;
    `words` (tf.string, `(batch, max_length)`) the vocabulary entry of
    every generated word, `""` at `<end>` and padding; `captions`
    (tf.string, `(batch,)`) the words joined by spaces. The vocabulary is
    a constant of the graph. String joins are not TFLite builtins, so a
    TFLite model is converted from the `"tokens"` signature instead, which
    returns `token_ids` and `attention` only; map ids to words with the
    vocabulary in the model's config.
    """
    tokens = captioning_tokens_serving_fn(model)
    vocabulary = tf.constant(model.vocabulary)
    pad_id, end_id = model.token_id("<pad>"), model.token_id("<end>")

    def serve(images):
        outputs = tokens(images)
        token_ids = outputs["token_ids"]
        is_word = tf.logical_and(tf.not_equal(token_ids, pad_id), tf.not_equal(token_ids, end_id))
        words = tf.where(is_word, tf.gather(vocabulary, token_ids), "")
        spaced = tf.where(is_word, words + " ", "")
        captions = tf.strings.strip(tf.strings.reduce_join(spaced, axis=-1))
        return {**outputs, "words": words, "captions": captions}

    return serve


@register_task
class CaptioningTask(Task):
    """Words from images: trained by `segattn caption-train` (validation
    loss picks `best.keras`), scored by BLEU, METEOR and CIDEr, served as
    captions with their attention, and as token ids for TFLite."""

    name = "captioning"
    train_command = "caption-train"
    evaluate_command = "caption-evaluate"
    monitor = "val_loss"
    mode = "min"
    # String outputs (captions) are not TFLite builtins: a captioner's TFLite
    # file is its "tokens" signature (token ids and attention).
    tflite_signature = "tokens"

    def serving_functions(self, model):
        return {
            "serving_default": captioning_serving_fn(model),
            "tokens": captioning_tokens_serving_fn(model),
        }

    def bytes_input_size(self, model):
        return tuple(model.image_size)

    def sample_inputs(self, model, data_spec, image_size, count=32):
        spec = data_spec or "shapes"
        size = tuple(model.image_size)
        options = generation_options(spec, num_images=count, image_size=size)
        data, _ = load_caption_dataset(spec, "val", **options)
        data = data.take(count)
        return [{"images": resize_image_uint8(e["images"], size).numpy()[None]} for e in data]

    def labels(self, model, data_spec, run):
        return list(model.vocabulary)

    def captioner(self, model):
        return model

    def score_signature(self, signature, data, split, count, image_size=None, num_images=None, **_):
        """BLEU-1 and BLEU-4 of the greedy `captions` output; on generated
        data, `num_images` held-out images at `image_size`."""
        options = generation_options(
            data,
            num_images=num_images or count or 200,
            image_size=None if image_size is None else image_size[0],
        )
        dataset, _ = load_caption_dataset(data, split, **options)
        if count is not None:
            dataset = dataset.take(count)
        references, candidates = {}, {}
        for i, example in enumerate(dataset):
            caption = signature(images=as_client_uint8(example["images"])[None])["captions"][0]
            candidates[i] = caption.numpy().decode()
            references[i] = [c.decode() for c in example["captions"].numpy()]
        scores = score_captions(references, candidates, metrics=("BLEU",))
        return {"BLEU-1": scores["BLEU-1"], "BLEU-4": scores["BLEU-4"]}
