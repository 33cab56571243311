"""The training objectives of Show, Attend and Tell (Xu et al., ICML 2015).

The caption negative log-likelihood ignoring padding (`CaptionLoss`), the
soft-attention doubly stochastic penalty (Section 4.2.1) and the
hard-attention REINFORCE surrogate (Section 4.1, Eq. 12). Every function
takes `targets` of shape `(batch, T)` (token ids, `pad_id` where the
caption has ended) and works on the non-pad steps only.
"""

import keras
import tensorflow as tf

PAD_ID = 0
# log(alpha) of a location that got weight 0 stays finite (float32's
# smallest normal is 1.2e-38); its gradient is then 0 rather than NaN.
_TINY = 1e-30


def target_mask(targets, pad_id=PAD_ID, dtype="float32"):
    """`(batch, T)` 1.0 at the caption's words and `<end>`, 0.0 at padding."""
    return tf.cast(tf.not_equal(tf.cast(targets, tf.int32), pad_id), dtype)


def token_log_likelihood(targets, logits, pad_id=PAD_ID):
    """`log p(y_t | y_<t, image)` of every target token, 0 at padding.

    Args:
        targets: int tensor `(batch, T)`.
        logits: float tensor `(batch, T, vocabulary_size)`.
        pad_id: int. The padding token. Defaults to `0`.

    Returns:
        A float32 tensor `(batch, T)`.
    """
    targets = tf.cast(targets, tf.int32)
    logits = tf.cast(logits, tf.float32)
    mask = target_mask(targets, pad_id)
    token_nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.where(mask > 0, targets, 0), logits
    )
    return -token_nll * mask


def caption_log_likelihood(targets, logits, pad_id=PAD_ID):
    """`log p(y | image)` of every caption: its token log-probabilities summed
    over the non-pad steps, a float32 tensor `(batch,)` (see
    `token_log_likelihood`)."""
    return tf.reduce_sum(token_log_likelihood(targets, logits, pad_id), axis=-1)


def masked_caption_loss(y_true, y_pred, pad_id=PAD_ID, per_token=False, from_logits=True):
    """Cross-entropy of every caption, ignoring the pad targets.

    Args:
        y_true: int tensor `(batch, T)`. Target token ids.
        y_pred: float tensor `(batch, T, vocabulary_size)`. Logits (or
            probabilities with `from_logits=False`).
        pad_id: int. Targets equal to it carry no loss. Defaults to `0`.
        per_token: bool. `False` sums over each caption's tokens, the
            paper's `-log p(y | image)`; `True` takes the mean over them.
            Defaults to `False`.
        from_logits: bool. Defaults to `True`.

    Returns:
        A float32 tensor `(batch,)`; a caption with no target gives 0.
    """
    y_true = tf.cast(y_true, tf.int32)
    mask = target_mask(y_true, pad_id)
    token_loss = keras.losses.sparse_categorical_crossentropy(
        tf.where(mask > 0, y_true, 0), tf.cast(y_pred, tf.float32), from_logits=from_logits
    )
    total = tf.reduce_sum(token_loss * mask, axis=-1)
    if per_token:
        total = total / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)
    return total


@keras.saving.register_keras_serializable(package="keras_segattn")
class CaptionLoss(keras.losses.Loss):
    """Masked sparse cross-entropy of captions: pad targets carry no loss.

    The batch loss is the mean over captions of each caption's summed
    token negative log-likelihood (the paper's objective), or of its mean
    with `per_token=True`. For `ShowAttendTell` the model adds the
    attention terms (doubly stochastic penalty, REINFORCE) itself in
    training.

    Args:
        pad_id: int. The padding token id. Defaults to `0`.
        per_token: bool. Average each caption's loss over its tokens instead
            of summing. Defaults to `False`.
        from_logits: bool. Defaults to `True`.

    Examples:

    ```python
    model.compile("adam", CaptionLoss())
    model.fit((images, input_ids), targets)
    ```
    """

    def __init__(
        self, pad_id=PAD_ID, per_token=False, from_logits=True, name="caption_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.pad_id = int(pad_id)
        self.per_token = bool(per_token)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return masked_caption_loss(y_true, y_pred, self.pad_id, self.per_token, self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"pad_id": self.pad_id, "per_token": self.per_token, "from_logits": self.from_logits}
        )
        return config


def doubly_stochastic_penalty(attention, mask, weight=1.0):
    """`weight * sum_i (1 - sum_t alpha_ti) ** 2`, averaged over the batch.

    The paper's doubly stochastic regularisation (Section 4.2.1): it pushes
    the decoder to give every location about equal attention over the
    whole caption. Only the non-pad steps count in `sum_t`.

    Args:
        attention: float tensor `(batch, T, L)`. The weights `alpha`.
        mask: float or bool tensor `(batch, T)`. 1 at the non-pad steps.
        weight: float. The paper's lambda. Defaults to `1.0`.

    Returns:
        A float32 scalar.
    """
    attention = tf.cast(attention, tf.float32)
    mask = tf.cast(mask, tf.float32)
    coverage = tf.reduce_sum(attention * mask[..., None], axis=1)
    return weight * tf.reduce_mean(tf.reduce_sum(tf.square(1.0 - coverage), axis=-1))


def attention_entropy(attention):
    """`H(alpha_t) = -sum_i alpha_ti log alpha_ti`, shape `(batch, T)`."""
    attention = tf.cast(attention, tf.float32)
    return -tf.reduce_sum(attention * tf.math.log(tf.maximum(attention, _TINY)), axis=-1)


def location_log_prob(attention, locations):
    """`log alpha_{t, s_t}`: the log-probability of the sampled locations.

    Args:
        attention: float tensor `(batch, L)` (or `(..., L)`).
        locations: int tensor `(batch,)` (or `(...)`).
    """
    one_hot = tf.one_hot(locations, tf.shape(attention)[-1], dtype=attention.dtype)
    return tf.reduce_sum(one_hot * tf.math.log(tf.maximum(attention, _TINY)), axis=-1)


def reinforce_surrogate(
    log_likelihood,
    location_log_probs,
    attention,
    mask,
    baseline,
    reinforce_weight=1.0,
    entropy_weight=0.0,
):
    """The hard-attention objective term whose gradient is the paper's Eq. 12.

    Per caption, with `R = stop_gradient(log p(y | s))`,

    `lambda_r (R - b) sum_t log p(s_t) + lambda_e sum_t H(alpha_t)`,

    summed over the non-pad steps. Its gradient, added to that of
    `log p(y | s)` (the caption loss), is the single-sample Monte Carlo
    estimate `d log p(y|s)/dW + lambda_r (log p(y|s) - b) d log p(s)/dW +
    lambda_e dH/dW`. With `lambda_r = 1` it is an unbiased estimate of
    the gradient of `E_s[log p(y | s)] + lambda_e H`, whatever the
    baseline `b` (`E[d log p(s)] = 0`); `b` only lowers its variance.

    Args:
        log_likelihood: float tensor `(batch,)`. `log p(y | s)` per caption;
            its gradient is stopped here.
        location_log_probs: float tensor `(batch, T)`. `log alpha_{t, s_t}`
            at the steps that sampled a location, 0 elsewhere.
        attention: float tensor `(batch, T, L)`. The weights `alpha`.
        mask: float tensor `(batch, T)`. 1 at the non-pad steps.
        baseline: float scalar. The moving-average baseline `b`.
        reinforce_weight: float. `lambda_r`. Defaults to `1.0`.
        entropy_weight: float. `lambda_e`. Defaults to `0.0`.

    Returns:
        A float32 tensor `(batch,)` to MAXIMISE (subtract it from a loss).
    """
    reward = tf.stop_gradient(tf.cast(log_likelihood, tf.float32)) - tf.cast(baseline, tf.float32)
    return step_reinforce_surrogate(
        reward[:, None], location_log_probs, attention, mask, reinforce_weight, entropy_weight
    )


def step_reinforce_surrogate(
    advantages, location_log_probs, attention, mask, reinforce_weight=1.0, entropy_weight=0.0
):
    """`lambda_r sum_t A_t log p(s_t) + lambda_e sum_t H(alpha_t)` per
    caption, over the non-pad steps: REINFORCE with an advantage `A_t` for
    each step's location (`(batch, T)`, or `(batch, 1)` for one per
    caption; its gradient is stopped). `reinforce_surrogate` is the
    paper's case, `A_t = log p(y | s) - b` at every step."""
    mask = tf.cast(mask, tf.float32)
    advantages = tf.stop_gradient(tf.cast(advantages, tf.float32))
    score = tf.reduce_sum(advantages * tf.cast(location_log_probs, tf.float32) * mask, axis=-1)
    entropy = tf.reduce_sum(attention_entropy(attention) * mask, axis=-1)
    return reinforce_weight * score + entropy_weight * entropy


def reward_to_go_advantages(token_log_likelihood, mask, baseline, sampled=None):
    """Lower-variance REINFORCE advantages for hard attention, `(batch, T)`.

    Two standard variance reductions of the paper's estimator, both
    leaving it unbiased: (1) the location chosen at step `t` can only
    change the words from `t` on (the decoder is causal), so its reward is
    `R_t = sum_{t' >= t} log p(y_t')`, the log-likelihood still to come,
    rather than the whole caption's; (2) its baseline is `b * n_t`, a
    moving average `b` of the log-likelihood per token times the `n_t`
    tokens still to come, so long and short captions are not compared with
    one number. The advantages `R_t - b n_t` are then divided by their
    standard deviation over the batch's scored steps (the steps in
    `mask` and, if given, `sampled`), which fixes the step size of the
    score-function term whatever the scale of the rewards (as in Mnih and
    Gregor's variance normalisation, 2014).

    Args:
        token_log_likelihood: float tensor `(batch, T)`, 0 at padding
            (`token_log_likelihood`); its gradient is stopped.
        mask: float tensor `(batch, T)`. 1 at the non-pad steps.
        baseline: float scalar. The moving average of the log-likelihood
            per token.
        sampled: bool tensor `(batch, T)` or `None`. The steps that sampled
            a location (the others' advantages do not count in the
            standard deviation).

    Returns:
        A float32 tensor `(batch, T)`, 0 at padding.
    """
    mask = tf.cast(mask, tf.float32)
    log_likelihood = tf.stop_gradient(tf.cast(token_log_likelihood, tf.float32)) * mask
    to_go = tf.cumsum(log_likelihood, axis=1, reverse=True)
    tokens_to_go = tf.cumsum(mask, axis=1, reverse=True)
    advantages = (to_go - tf.cast(baseline, tf.float32) * tokens_to_go) * mask
    scored = mask if sampled is None else mask * tf.cast(sampled, tf.float32)
    count = tf.maximum(tf.reduce_sum(scored), 1.0)
    mean = tf.reduce_sum(advantages * scored) / count
    variance = tf.reduce_sum(tf.square(advantages - mean) * scored) / count
    return advantages / tf.maximum(tf.sqrt(variance), 1e-3)
