"""Show, Attend and Tell (Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel
and Bengio, ICML 2015): an attention LSTM that captions images.

A CNN turns the image into a grid of `L` annotation vectors `a_i` (VGG16's
conv5_3, 14x14x512 at 224x224, as in the paper; or a small CPU-friendly
CNN). The LSTM starts from `h_0 = f_init,h(mean a)` and `c_0 =
f_init,c(mean a)`; at every step it attends over the grid with its
previous state (`BahdanauVisualAttention`, optionally gated), reads the
previous word and the context `z_t`, and scores the next word with the
deep output layer `L_o(tanh(E y_{t-1} + L_h h_t + L_z z_t))`.

Soft attention uses the expected context `z_t = sum_i alpha_ti a_i` and is
trained by back-propagation with the doubly stochastic penalty. Hard
attention picks one location `s_t ~ Multinoulli(alpha_t)` in training and
learns the attention by REINFORCE (see `ShowAttendTell`); at inference it
takes the argmax location, so decoding is deterministic.

Differences from the paper and the authors' code (`kelvinxu/arctic-
captions`, see `shared/notes/papers.md`): the encoder is VGG16 conv5_3
(the paper's VGG is probably VGG-19) and is trainable unless
`encoder_trainable=False`; the deep output has the code's `tanh` (Eq. 7
of the paper is linear); captions are padded to a fixed `max_length`
rather than bucketed by length, so that the unrolled decoder has a static
graph that TFLite runs with builtin ops.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_segattn.core.saving import load_keras_file
from keras_segattn.core.validation import check_int
from keras_segattn.core.vocabulary import (  # noqa: F401  (encode_captions: public here)
    END,
    PAD,
    SPECIAL_TOKENS,
    START,
    UNK,
    check_vocabulary,
    encode_captions,
)
from keras_segattn.layers import BahdanauVisualAttention, ImagePreprocessing
from keras_segattn.layers.image_preprocessing import check_image_shape
from keras_segattn.models.backbones.vgg import VGG16_BLOCKS, conv_bn_relu
from keras_segattn.models.backbones.vgg import load_weights as load_vgg16_weights
from keras_segattn.models.captioning.losses import (
    doubly_stochastic_penalty,
    location_log_prob,
    reinforce_surrogate,
    reward_to_go_advantages,
    step_reinforce_surrogate,
    target_mask,
    token_log_likelihood,
)
from keras_segattn.models.common import load_saved_weights
from keras_segattn.models.registry import register_model

PAPER = (
    "Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel and Bengio, Show, Attend and Tell: "
    "Neural Image Caption Generation with Visual Attention, ICML 2015"
)
ENCODERS = ("light", "vgg16")
ATTENTIONS = ("soft", "hard")
METHODS = ("greedy", "beam")
# 3x3 convolution stages of the light encoder; a 2x2 max-pooling follows
# every stage but the last: a 7x7 grid of 256-d annotations at 224x224.
LIGHT_FILTERS = (32, 64, 128, 256, 256, 256)
TINY_VOCABULARY = (*SPECIAL_TOKENS, "a", "red", "blue", "green", "square", "circle", "on", "grass")
TINY = {
    "vocabulary": list(TINY_VOCABULARY),
    "image_size": (32, 32),
    "encoder_filters": (8, 16, 16, 16),
    "embedding_dim": 8,
    "units": 16,
    "attention_units": 8,
    "max_length": 5,
    "dropout": 0.0,
}
# Added to the logits of <pad> and <start> when decoding: neither is ever a
# target, so generated captions never contain them.
_FORBIDDEN = -1e9


def _fraction(value, name, closed=True):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0)
    if not ok:
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be a float in {interval}; got {name}={value!r}.")
    return float(value)


def _non_negative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a float >= 0; got {name}={value!r}.")
    return float(value)


def build_encoder(encoder, image_size, filters=LIGHT_FILTERS):
    """The CNN from `(batch, h, w, 3)` pixels in [0, 255] to `(batch, L, D)`.

    `"vgg16"`: the five VGG16 blocks without the last pooling (conv5_3,
    caffe preprocessing; layer names of `keras.applications.VGG16`, so the
    ImageNet weights load by name). `"light"`: one 3x3 ReLU convolution a
    stage (`filters`), 2x2 max-pooling between stages.

    Returns:
        `(model, grid_size)`: a functional `keras.Model` named `"encoder"`
        and the `(grid_h, grid_w)` of its annotation grid.
    """
    pools = len(VGG16_BLOCKS) - 1 if encoder == "vgg16" else len(filters) - 1
    if min(image_size) < 2**pools:
        raise ValueError(
            f"image_size={tuple(image_size)} is too small for encoder={encoder!r}: its "
            f"{pools} poolings need at least {2**pools}x{2**pools} pixels."
        )
    inputs = keras.Input((*image_size, 3), name="images")
    if encoder == "vgg16":
        x = ImagePreprocessing("caffe", name="preprocessing")(inputs)
        for block, (num_convs, channels) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, num_convs + 1):
                x = conv_bn_relu(x, channels, 3, f"block{block}_conv{i}", batch_norm=False)
            if block < len(VGG16_BLOCKS):
                x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    else:
        x = ImagePreprocessing("symmetric", name="preprocessing")(inputs)
        for stage, stage_filters in enumerate(filters, start=1):
            x = keras.layers.Conv2D(
                stage_filters, 3, padding="same", activation="relu", name=f"conv{stage}"
            )(x)
            if stage < len(filters):
                x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    grid_h, grid_w, depth = x.shape[1:]
    annotations = keras.layers.Reshape((grid_h * grid_w, depth), name="annotations")(x)
    return keras.Model(inputs, annotations, name="encoder"), (int(grid_h), int(grid_w))


@keras.saving.register_keras_serializable(package="keras_segattn")
class CaptionDecoder(keras.layers.Layer):
    """The attention LSTM of Show, Attend and Tell, one word a step.

    Called on `(annotations (batch, L, D), input_ids (batch, T))` (`T`
    static) it runs the teacher-forced decoder, unrolled in Python, and
    returns a dict of `"logits"` `(batch, T, vocabulary_size)`,
    `"attention"` `(batch, T, L)` and `"location_log_probs"` `(batch, T)`
    (`log alpha_{t, s_t}` at the steps where hard attention sampled a
    location in training, else 0). `initial_state` and `step` expose the
    same computation one step at a time for decoding.

    Args:
        vocabulary_size: int. Output classes.
        embedding_dim: int. Word embedding size (`E`; also the deep output
            layer's width).
        units: int. LSTM units.
        attention_units: int. Hidden size of the attention MLP.
        attention: str. `"soft"` or `"hard"`. Defaults to `"soft"`.
        gating: bool. Scale the context by the gate `beta`. Defaults to
            `True`.
        dropout: float. Dropout rate on `h_t` and on the deep output.
            Defaults to `0.0`.
        expected_context_rate: float. Hard attention in training: the
            probability, drawn independently for every example and step,
            of using the expected context instead of a sampled location.
            Defaults to `0.5`, the paper's.
        seed: int or `None`. Seed of the location sampling.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        units,
        attention_units,
        attention="soft",
        gating=True,
        dropout=0.0,
        expected_context_rate=0.5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got {attention!r}.")
        self.vocabulary_size = check_int(vocabulary_size, "vocabulary_size")
        self.embedding_dim = check_int(embedding_dim, "embedding_dim")
        self.units = check_int(units, "units")
        self.attention_units = check_int(attention_units, "attention_units")
        self.attention_mode = attention
        self.gating = bool(gating)
        self.dropout = _fraction(dropout, "dropout", closed=False)
        self.expected_context_rate = _fraction(expected_context_rate, "expected_context_rate")
        self.seed = seed

        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.init_h = keras.layers.Dense(units, activation="tanh", name="init_h")
        self.init_c = keras.layers.Dense(units, activation="tanh", name="init_c")
        self.attention = BahdanauVisualAttention(attention_units, gating=gating, name="attention")
        self.lstm = keras.layers.LSTMCell(units, name="lstm")
        self.output_hidden = keras.layers.Dense(embedding_dim, name="deep_output_h")
        self.output_context = keras.layers.Dense(
            embedding_dim, use_bias=False, name="deep_output_z"
        )
        self.output_logits = keras.layers.Dense(vocabulary_size, name="deep_output_logits")
        self.hidden_dropout = keras.layers.Dropout(self.dropout, name="hidden_dropout")
        self.output_dropout = keras.layers.Dropout(self.dropout, name="output_dropout")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, annotations_shape, input_ids_shape=None):
        locations, features = annotations_shape[1:]
        self.init_h.build((None, features))
        self.init_c.build((None, features))
        self.embedding.build((None,))
        self.attention.build((None, locations, features), (None, self.units))
        self.lstm.build((None, self.embedding_dim + features))
        self.output_hidden.build((None, self.units))
        self.output_context.build((None, features))
        self.output_logits.build((None, self.embedding_dim))
        # The REINFORCE baseline: a moving average of log p(y | s), updated
        # by ShowAttendTell.compute_loss in training.
        self.baseline = self.add_weight(
            shape=(), initializer="zeros", trainable=False, aggregation="mean", name="baseline"
        )
        self.built = True

    def initial_state(self, annotations):
        """`(h_0, c_0)` from the mean annotation vector (`f_init,h`, `f_init,c`)."""
        mean = ops.mean(annotations, axis=1)
        return self.init_h(mean), self.init_c(mean)

    def _gate(self, hidden):
        if not self.gating:
            return 1.0
        attention = self.attention
        gate = ops.matmul(hidden, ops.cast(attention.gate_kernel, hidden.dtype))
        return ops.sigmoid(gate + ops.cast(attention.gate_bias, hidden.dtype))

    def step(self, tokens, states, annotations, projected, training=False, location=None):
        """One decoding step.

        Args:
            tokens: int tensor `(batch,)`. The previous words `y_{t-1}`.
            states: `(h, c)`, each `(batch, units)`.
            annotations: `(batch, L, D)`.
            projected: `self.attention.project_annotations(annotations)`.
            training: bool. Dropout, and hard attention samples its
                location (else it takes the argmax).
            location: int tensor `(batch,)` or `None`. Hard attention only:
                read this location instead of sampling or the argmax (to
                enumerate locations, e.g. for an exact gradient).

        Returns:
            `(logits (batch, V), (h, c), alpha (batch, L),
            location_log_prob (batch,))`, the last 0 where no location
            was sampled.
        """
        h, c = states
        embedded = self.embedding(tokens)
        expected, alpha = self.attention.attend(annotations, projected, h)
        log_prob = ops.zeros_like(alpha[:, 0])
        context = expected
        if self.attention_mode == "hard":
            sampled = location is None and training
            if location is not None:
                chosen = ops.cast(location, "int32")
            elif training:
                log_alpha = ops.log(ops.maximum(ops.cast(alpha, "float32"), 1e-30))
                chosen = keras.random.categorical(log_alpha, 1, seed=self.seed_generator)[:, 0]
            else:
                # tf.argmax, not ops.argmax: the latter needs Flex in TFLite.
                chosen = tf.argmax(alpha, axis=-1, output_type=tf.int32)
            one_hot = ops.one_hot(chosen, ops.shape(alpha)[-1], dtype=alpha.dtype)
            hard = ops.squeeze(ops.matmul(ops.expand_dims(one_hot, 1), annotations), 1)
            context = hard * self._gate(h)
            if sampled:
                log_prob = location_log_prob(alpha, chosen)
                if self.expected_context_rate > 0:
                    # The paper's trick: with probability 0.5 the step uses
                    # the expected context (and so has no REINFORCE term).
                    uniform = keras.random.uniform(tf.shape(alpha)[:1], seed=self.seed_generator)
                    use_expected = uniform < self.expected_context_rate
                    context = ops.where(use_expected[:, None], expected, context)
                    log_prob = ops.where(use_expected, ops.zeros_like(log_prob), log_prob)
        h, (_, c) = self.lstm(ops.concatenate([embedded, context], axis=-1), [h, c])
        deep = ops.tanh(
            embedded
            + self.output_hidden(self.hidden_dropout(h, training=training))
            + self.output_context(context)
        )
        logits = self.output_logits(self.output_dropout(deep, training=training))
        return logits, (h, c), alpha, log_prob

    def call(self, annotations, input_ids, training=None):
        steps = input_ids.shape[1]
        if steps is None:
            raise ValueError(
                "input_ids must have a static length (the decoder is unrolled); got shape "
                f"{tuple(input_ids.shape)}."
            )
        input_ids = ops.cast(input_ids, "int32")
        projected = self.attention.project_annotations(annotations)
        states = self.initial_state(annotations)
        logits, alphas, log_probs = [], [], []
        for t in range(steps):
            step_logits, states, alpha, log_prob = self.step(
                input_ids[:, t], states, annotations, projected, training=bool(training)
            )
            logits.append(step_logits)
            alphas.append(alpha)
            log_probs.append(log_prob)
        return {
            "logits": ops.stack(logits, axis=1),
            "attention": ops.stack(alphas, axis=1),
            "location_log_probs": ops.stack(log_probs, axis=1),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "attention_units": self.attention_units,
                "attention": self.attention_mode,
                "gating": self.gating,
                "dropout": self.dropout,
                "expected_context_rate": self.expected_context_rate,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_segattn")
class ShowAttendTell(keras.Model):
    """Show, Attend and Tell captioner; build it with `show_attend_tell`.

    A functional model from `(images, input_ids)` to teacher-forced
    next-word logits `(batch, max_length, vocabulary_size)`. In training
    mode (`fit`, or `model(x, training=True)`) it returns a dict with
    `"logits"`, `"attention"` `(batch, max_length, L)` and
    `"location_log_probs"` `(batch, max_length)`, and `compute_loss` adds
    to the compiled loss (use `CaptionLoss`; the targets are `(batch,
    max_length)` token ids, `<pad>` where the caption has ended):

    - soft attention: the doubly stochastic penalty `lambda * sum_i (1 -
      sum_t alpha_ti) ** 2` over the non-pad steps, averaged over captions;
    - hard attention: the REINFORCE surrogate `S` (`reinforce_surrogate`)
      as `-(S - stop_gradient(S))`, which adds the score-function and
      entropy gradients but nothing to the reported loss value. Its
      reward is `log p(y | s)` (summed over the caption's non-pad tokens,
      gradient stopped) minus the moving-average baseline `b`; after each
      training batch `b <- decay * b + (1 - decay) * mean(log p(y | s))`
      (`decoder.baseline`, non-trainable).
      Each step samples `s_t ~ Multinoulli(alpha_t)` and reads `a_{s_t}`
      (times the gate), except that with probability
      `expected_context_rate`, drawn per example and per step, it reads
      the expected context instead and gets no REINFORCE term. With
      `variance_reduction=True` each sampled step is rewarded with the
      log-likelihood of the words from it on, against a per-token moving
      average, normalised over the batch (`reward_to_go_advantages`).

    `evaluate` and inference use the deterministic model (hard attention
    reads the argmax location) and the compiled loss only. `generate`
    decodes (greedy or beam search); `decode_greedy` is the graph-friendly
    greedy decoder the export uses. `sample_weight` weighs the compiled
    loss only.

    Args: those of `show_attend_tell`.
    """

    def __init__(
        self,
        vocabulary,
        encoder="light",
        encoder_filters=LIGHT_FILTERS,
        encoder_trainable=True,
        image_size=(224, 224),
        embedding_dim=512,
        units=1024,
        attention_units=512,
        attention="soft",
        gating=True,
        doubly_stochastic=1.0,
        max_length=20,
        dropout=0.5,
        reinforce_weight=1.0,
        entropy_weight=0.002,
        baseline_decay=0.9,
        expected_context_rate=0.5,
        variance_reduction=False,
        name="show_attend_tell",
        **kwargs,
    ):
        vocabulary = check_vocabulary(vocabulary)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}; got encoder={encoder!r}.")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got attention={attention!r}.")
        if not (isinstance(image_size, (list, tuple)) and len(image_size) == 2):
            raise ValueError(f"image_size must be (height, width); got {image_size!r}.")
        image_size = tuple(check_int(s, "image_size") for s in image_size)
        encoder_filters = tuple(check_int(f, "encoder_filters") for f in encoder_filters)
        if not encoder_filters:
            raise ValueError("encoder_filters must name at least one stage.")
        max_length = check_int(max_length, "max_length")
        doubly_stochastic = _non_negative(doubly_stochastic, "doubly_stochastic")
        reinforce_weight = _non_negative(reinforce_weight, "reinforce_weight")
        entropy_weight = _non_negative(entropy_weight, "entropy_weight")
        baseline_decay = _fraction(baseline_decay, "baseline_decay")

        encoder_model, grid_size = build_encoder(encoder, image_size, encoder_filters)
        encoder_model.trainable = bool(encoder_trainable)
        decoder = CaptionDecoder(
            len(vocabulary),
            embedding_dim,
            units,
            attention_units,
            attention=attention,
            gating=gating,
            dropout=dropout,
            expected_context_rate=expected_context_rate,
            name="decoder",
        )
        images = keras.Input((*image_size, 3), name="images")
        input_ids = keras.Input((max_length,), dtype="int32", name="input_ids")
        decoded = decoder(encoder_model(images), input_ids)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(
            decoded["logits"]
        )
        super().__init__([images, input_ids], logits, name=name, **kwargs)
        training_outputs = {**decoded, "logits": logits}
        # A bound method, not a tracked sub-model: the weights stay this model's.
        self._training_call = keras.Model([images, input_ids], training_outputs).__call__
        self.encoder = encoder_model
        self.decoder = decoder
        self.grid_size = grid_size
        self._ids = {w: i for i, w in enumerate(vocabulary)}
        forbidden = np.zeros(len(vocabulary), np.float32)
        forbidden[[self._ids[PAD], self._ids[START]]] = _FORBIDDEN
        self._forbidden = forbidden
        self._config = {
            "vocabulary": vocabulary,
            "encoder": encoder,
            "encoder_filters": encoder_filters,
            "encoder_trainable": bool(encoder_trainable),
            "image_size": image_size,
            "embedding_dim": decoder.embedding_dim,
            "units": decoder.units,
            "attention_units": decoder.attention_units,
            "attention": attention,
            "gating": decoder.gating,
            "doubly_stochastic": doubly_stochastic,
            "max_length": max_length,
            "dropout": decoder.dropout,
            "reinforce_weight": reinforce_weight,
            "entropy_weight": entropy_weight,
            "baseline_decay": baseline_decay,
            "expected_context_rate": decoder.expected_context_rate,
            "variance_reduction": bool(variance_reduction),
        }

    # === Properties ===

    @property
    def vocabulary(self):
        return list(self._config["vocabulary"])

    @property
    def image_size(self):
        return self._config["image_size"]

    @property
    def max_length(self):
        return self._config["max_length"]

    @property
    def attention_mode(self):
        return self._config["attention"]

    def token_id(self, word):
        """The id of `word` (`<unk>`'s if it is not in the vocabulary)."""
        return self._ids.get(word, self._ids[UNK])

    # === Training ===

    def call(self, inputs, training=None, mask=None):
        if training:
            return self._training_call(inputs, training=True)
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        logits = y_pred["logits"]
        loss = super().compute_loss(x, y, logits, sample_weight, training=training)
        if y is None:
            return loss
        config = self._config
        mask = target_mask(y, self._ids[PAD])
        if config["attention"] == "soft":
            if config["doubly_stochastic"] > 0:
                loss = loss + doubly_stochastic_penalty(
                    y_pred["attention"], mask, config["doubly_stochastic"]
                )
            return loss
        baseline = self.decoder.baseline
        tokens = tf.stop_gradient(token_log_likelihood(y, logits, self._ids[PAD]))
        location_log_probs = y_pred["location_log_probs"]
        if config.get("variance_reduction"):
            # Rewards to go, a per-token baseline, normalised advantages.
            advantages = reward_to_go_advantages(
                tokens, mask, tf.convert_to_tensor(baseline), sampled=location_log_probs < 0
            )
            surrogate = step_reinforce_surrogate(
                advantages,
                location_log_probs,
                y_pred["attention"],
                mask,
                config["reinforce_weight"],
                config["entropy_weight"],
            )
            # The baseline follows the log-likelihood per token.
            observed = tf.reduce_sum(tokens) / tf.maximum(tf.reduce_sum(mask), 1.0)
        else:  # the paper's: the caption's log-likelihood against a moving average
            log_likelihood = tf.reduce_sum(tokens, axis=-1)
            surrogate = reinforce_surrogate(
                log_likelihood,
                location_log_probs,
                y_pred["attention"],
                mask,
                tf.convert_to_tensor(baseline),
                config["reinforce_weight"],
                config["entropy_weight"],
            )
            observed = tf.reduce_mean(log_likelihood)
        # Minus (S - stop_gradient(S)): the gradient of -S, a value of 0, so
        # the reported loss stays the caption loss, comparable with evaluate.
        surrogate = tf.reduce_mean(surrogate)
        loss = loss - (surrogate - tf.stop_gradient(surrogate))
        if training:
            decay = config["baseline_decay"]
            baseline.assign(decay * baseline + (1.0 - decay) * observed)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            y_pred = y_pred["logits"]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # === Decoding ===

    def resize_images(self, images):
        """Float32 `(batch, *image_size, 3)` from pixels of any size (bilinear)."""
        images = tf.cast(images, tf.float32)
        if tuple(images.shape[1:3]) == self.image_size:
            return images
        return tf.image.resize(images, self.image_size, method="bilinear")

    def _check_max_length(self, max_length):
        return self.max_length if max_length is None else check_int(max_length, "max_length")

    def decode_greedy(self, images, max_length=None):
        """Greedy decoding as a static graph: a Python loop of `max_length` steps.

        No `tf.while_loop` (TFLite does not lower one carrying a
        `TensorArray`): every step is in the graph, and the argmax word is
        fed back. After `<end>` the tokens are `<pad>` (0) and the
        attention maps zeros. `<pad>` and `<start>` are never emitted.

        Args:
            images: float `(batch, *image_size, 3)` pixels in [0, 255].
            max_length: int or `None`. Steps; defaults to the model's.

        Returns:
            A dict of `"token_ids"` int32 `(batch, max_length)` and
            `"attention"` float32 `(batch, max_length, grid_h, grid_w)`.
        """
        max_length = self._check_max_length(max_length)
        decoder = self.decoder
        annotations = self.encoder(images, training=False)
        projected = decoder.attention.project_annotations(annotations)
        states = decoder.initial_state(annotations)
        end_id = self._ids[END]
        tokens = tf.fill(tf.shape(annotations)[:1], self._ids[START])
        alive = tf.cast(tf.not_equal(tokens, end_id), tf.float32)
        # <pad> and <start> lose the argmax by sitting just below the smallest
        # logit, not at -1e9: a full-integer TFLite file quantises the argmax
        # input over its range, and -1e9 left every real logit one value.
        allowed = tf.constant(self._forbidden == 0)
        token_ids, maps = [], []
        for _ in range(max_length):
            logits, states, alpha, _ = decoder.step(
                tokens, states, annotations, projected, training=False
            )
            logits = tf.cast(logits, tf.float32)
            floor = tf.reduce_min(logits, axis=-1, keepdims=True) - 1.0
            tokens = tf.argmax(tf.where(allowed, logits, floor), -1, output_type=tf.int32)
            # <pad> is 0: multiplying by `alive` pads everything after <end>.
            token_ids.append(tokens * tf.cast(alive, tf.int32))
            maps.append(tf.cast(alpha, tf.float32) * alive[:, None])
            alive = alive * tf.cast(tf.not_equal(tokens, end_id), tf.float32)
        grid_h, grid_w = self.grid_size
        return {
            "token_ids": tf.stack(token_ids, axis=1),
            "attention": tf.reshape(tf.stack(maps, axis=1), [-1, max_length, grid_h, grid_w]),
        }

    def _beam_search(self, image, beam_width, max_length, length_normalize):
        """Beam search for one image `(1, h, w, 3)`; returns (tokens, maps)."""
        decoder = self.decoder
        annotations = self.encoder(image, training=False)
        projected = decoder.attention.project_annotations(annotations)
        states = decoder.initial_state(annotations)
        end_id = self._ids[END]
        vocabulary_size = len(self._forbidden)
        # Live hypotheses: (tokens, log-probability, attention maps).
        live = [([], 0.0, [])]
        done = []
        tokens = np.array([self._ids[START]], np.int32)
        for _ in range(max_length):
            count = len(live)
            logits, (h, c), alpha, _ = decoder.step(
                tf.constant(tokens),
                states,
                tf.repeat(annotations, count, axis=0),
                tf.repeat(projected, count, axis=0),
                training=False,
            )
            log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32) + self._forbidden).numpy()
            log_probs = np.where(self._forbidden < 0, -np.inf, log_probs.astype(np.float64))
            scores = (np.array([hyp[1] for hyp in live])[:, None] + log_probs).reshape(-1)
            # A stable sort: equal scores keep the lower (beam, word), as argmax.
            best = np.argsort(-scores, kind="stable")
            best = best[np.isfinite(scores[best])][: beam_width - len(done)]
            alpha = alpha.numpy()
            survivors, parents = [], []
            for index in best:
                parent, word = divmod(int(index), vocabulary_size)
                words, _, maps = live[parent]
                hypothesis = ([*words, word], float(scores[index]), [*maps, alpha[parent]])
                if word == end_id:
                    done.append(hypothesis)
                else:
                    survivors.append(hypothesis)
                    parents.append(parent)
            if not survivors:
                break
            live = survivors
            tokens = np.array([hyp[0][-1] for hyp in live], np.int32)
            states = (tf.gather(h, parents), tf.gather(c, parents))
        else:
            done.extend(live)  # max_length reached: keep the unfinished ones too

        def score(hypothesis):
            return hypothesis[1] / len(hypothesis[0]) if length_normalize else hypothesis[1]

        words, _, maps = max(done, key=score)
        return words, maps

    def generate(
        self, images, method="greedy", beam_width=3, max_length=None, length_normalize=False
    ):
        """Captions a batch of images.

        Args:
            images: uint8 or float `(batch, h, w, 3)` RGB pixels in [0, 255];
                other sizes than `image_size` are resized (bilinear), as in
                the exported signature.
            method: str. `"greedy"` (`decode_greedy`) or `"beam"`.
                Defaults to `"greedy"`.
            beam_width: int >= 1. Beam search: hypotheses kept; a
                hypothesis ending in `<end>` is set aside and the beam
                shrinks, until none is left or `max_length` words were
                generated (then the unfinished ones compete too). The
                caption with the highest log-probability wins.
                `beam_width=1` is greedy decoding. Defaults to `3`.
            max_length: int or `None`. Most tokens generated, `<end>`
                included. Defaults to the model's `max_length`.
            length_normalize: bool. Beam search: rank the finished captions
                by log-probability per token instead of the total (which
                favours short captions). Defaults to `False`.

        Returns:
            A dict of NumPy arrays and lists: `"token_ids"` int32 `(batch,
            max_length)`, each caption's tokens up to `<end>` included,
            `<pad>` (0) after; `"attention"` float32 `(batch, max_length,
            grid_h, grid_w)`, the weights `alpha` each word was generated
            with (rows sum to 1; zeros after `<end>`; for hard attention
            the distribution whose argmax location was read); `"words"`,
            a list of word lists without `<end>`; `"captions"`, the words
            joined by spaces.

        Raises:
            ValueError: images not `(batch, h, w, 3)`, an unknown `method`,
                `beam_width` or `max_length` not a positive int.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got method={method!r}.")
        beam_width = check_int(beam_width, "beam_width")
        max_length = self._check_max_length(max_length)
        images = tf.convert_to_tensor(images)
        check_image_shape(images.shape, min_size=1, channels=3, where="images")
        images = self.resize_images(images)
        if method == "greedy":
            decoded = self.decode_greedy(images, max_length)
            token_ids = decoded["token_ids"].numpy()
            attention = decoded["attention"].numpy()
        else:
            token_ids = np.zeros((images.shape[0], max_length), np.int32)
            attention = np.zeros((images.shape[0], max_length, *self.grid_size), np.float32)
            for row in range(images.shape[0]):
                tokens, maps = self._beam_search(
                    images[row : row + 1], beam_width, max_length, length_normalize
                )
                token_ids[row, : len(tokens)] = tokens
                attention[row, : len(maps)] = np.reshape(maps, (len(maps), *self.grid_size))
        words = [self.decode_tokens(row) for row in token_ids]
        return {
            "token_ids": token_ids,
            "attention": attention,
            "words": words,
            "captions": [" ".join(w) for w in words],
        }

    def decode_tokens(self, token_ids):
        """The words of one row of token ids, up to `<end>` (excluded),
        without `<pad>` and `<start>`."""
        vocabulary = self._config["vocabulary"]
        words = []
        for token in np.asarray(token_ids).tolist():
            word = vocabulary[token]
            if word == END:
                break
            if word not in (PAD, START):
                words.append(word)
        return words

    # === Config ===

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# A light captioner for CPU training on the built-in shapes (64x64 images),
# the preset "shapes". Three stages give a 16x16 grid of 128-d annotations
# whose cells see 18x18 pixels, about one shape: with the 8x8 grid of four
# stages every cell saw 38x38 pixels, most of the image, and the decoder
# could name a shape without attending to it (docs/captioning.md). No
# doubly stochastic penalty: the steps whose words do not need the image
# (the decoder reads an object a step ahead) are what it moves, and it
# moves them onto the cells the caption has looked at least: the background.
SHAPES_MODEL = {
    "encoder_filters": (32, 64, 128),
    "embedding_dim": 64,
    "units": 256,
    "attention_units": 128,
    "dropout": 0.2,
    "doubly_stochastic": 0.0,
}


@register_model(
    "show_attend_tell",
    task="captioning",
    paper=PAPER,
    tiny=TINY,
    presets={"shapes": SHAPES_MODEL},
)
def show_attend_tell(
    vocabulary,
    encoder="light",
    weights=None,
    **kwargs,
):
    """Builds the Show, Attend and Tell image captioner (Xu et al., 2015).

    Args:
        vocabulary: list of str. The words, index = token id: `"<pad>"` at
            0, and `"<start>"`, `"<end>"`, `"<unk>"` somewhere. Saved in
            the model's config, so it travels with the model.
        encoder: str. `"vgg16"` (VGG16 up to conv5_3: a 14x14 grid of
            512-d annotations at 224x224, as in the paper) or `"light"` (a
            small CNN for CPUs, see `encoder_filters`). Defaults to
            `"light"`.
        weights: `None`, `"imagenet"` (the VGG16 encoder's ImageNet
            weights, `encoder="vgg16"` only) or the path of a
            `.weights.h5` / `.keras` file of this model. Defaults to
            `None`.
        encoder_trainable: bool. `False` freezes the encoder (the paper
            does not fine-tune its VGG). Defaults to `True`.
        image_size: `(height, width)` of the input images. Defaults to
            `(224, 224)`.
        embedding_dim: int. Word embedding size and deep output width.
            Defaults to `512` (the authors' COCO setting).
        units: int. LSTM units. Defaults to `1024` (the authors' COCO
            script uses 1800).
        attention_units: int. Attention MLP hidden size. Defaults to `512`.
        attention: str. `"soft"` (deterministic, expected context) or
            `"hard"` (stochastic, REINFORCE). Defaults to `"soft"`.
        gating: bool. The gating scalar `beta` on the context. Defaults to
            `True`.
        doubly_stochastic: float. Soft attention: lambda of the doubly
            stochastic penalty. Defaults to `1.0` (the authors' `alpha_c`).
        max_length: int. Length of `input_ids` and targets (captions of up
            to `max_length - 1` words, plus `<start>` / `<end>`) and of the
            generated token ids. Defaults to `20`.
        dropout: float in [0, 1). Dropout on the LSTM output and the deep
            output layer. Defaults to `0.5`.
        encoder_filters: tuple of int. `"light"` encoder: channels of each
            3x3 convolution stage, a 2x2 max-pooling between stages: the
            grid is `image_size / 2 ** (len - 1)`. Defaults to `(32, 64,
            128, 256, 256, 256)` (7x7x256 at 224x224).
        reinforce_weight: float. Hard attention: `lambda_r`, the weight of
            the score-function term (`1.0` keeps the gradient estimate
            unbiased). Defaults to `1.0`.
        entropy_weight: float. Hard attention: `lambda_e`, the entropy
            bonus. Defaults to `0.002` (the authors' code).
        baseline_decay: float. Hard attention: the baseline's moving-average
            decay. Defaults to `0.9`.
        expected_context_rate: float. Hard attention: probability, per
            example and step, that training uses the expected context
            instead of a sampled location. Defaults to `0.5`.
        variance_reduction: bool. Hard attention: REINFORCE with rewards
            to go, a per-token baseline and normalised advantages
            (`reward_to_go_advantages`) instead of the paper's one reward
            per caption against a moving average. Defaults to `False`.
        name: str. Defaults to `"show_attend_tell"`.

    Returns:
        A `ShowAttendTell` (a functional `keras.Model`) from `images`
        `(batch, *image_size, 3)` RGB pixels in [0, 255] and `input_ids`
        `(batch, max_length)` int32 (starting with `<start>`) to next-word
        logits `(batch, max_length, len(vocabulary))`.

    Raises:
        ValueError: a bad `vocabulary` (not a list of unique words with
            `"<pad>"` at 0 and the special tokens), unknown `encoder` or
            `attention`, non-positive sizes, rates outside [0, 1], an image
            too small for the encoder, `weights="imagenet"` with the light
            encoder.

    Examples:

    ```python
    model = show_attend_tell(vocabulary, encoder="vgg16", weights="imagenet",
                             encoder_trainable=False)
    model.compile("adam", CaptionLoss())
    input_ids, targets = encode_captions(captions, vocabulary, model.max_length)
    model.fit((images, input_ids), targets, epochs=10)
    model.generate(images, method="beam", beam_width=3)["captions"]
    ```
    """
    if weights == "imagenet" and encoder != "vgg16":
        raise ValueError(
            "weights='imagenet' needs encoder='vgg16' (the light encoder has no pretrained "
            f"weights); got encoder={encoder!r}."
        )
    model = ShowAttendTell(
        vocabulary,
        encoder=encoder,
        **kwargs,
    )
    if weights == "imagenet":
        load_vgg16_weights(model.encoder, "imagenet", include_fc=False)
        return model
    return load_captioner_weights(model, weights)


def load_captioner_weights(model, weights):
    """Loads a `.keras` or `.weights.h5` file into `model`, first checking
    that it was saved with the same vocabulary (a different one would give
    wrong words, or a shape error deep inside Keras)."""
    if weights is None:
        return model
    path = os.fspath(weights)
    if path.endswith(".keras") and os.path.exists(path):
        saved = load_keras_file(path, "weights")
        saved_words = list(getattr(saved, "vocabulary", []))
        if saved_words != model.vocabulary:
            raise ValueError(
                f"vocabulary does not match the model saved in {path!r}: it has "
                f"{len(saved_words)} words, the given vocabulary {len(model.vocabulary)}"
                + _first_difference(saved_words, model.vocabulary)
                + ". Build the model with the saved vocabulary (`model.vocabulary`)."
            )
    try:
        return load_saved_weights(model, weights)
    except ValueError as error:
        if "must be None" in str(error):  # a missing file: already clear
            raise
        raise ValueError(
            f"weights {path!r} do not fit this captioner ({len(model.vocabulary)} words, "
            f"max_length {model.max_length}): were they saved with another vocabulary or "
            f"other sizes? Keras says: {error}"
        ) from error


def _first_difference(saved, given):
    for i, (a, b) in enumerate(zip(saved, given)):
        if a != b:
            return f" (first difference at id {i}: {a!r} saved, {b!r} given)"
    return ""
