"""Training data by epoch: epoch `e` a function of the seed and `e` alone.

Every training recipe feeds `fit` through `epochs_of`: the batches of epoch
`e` are drawn (shuffled, augmented, sampled) with seeds made from `seed + e`,
never from a random state carried over from the epochs before. So a run
killed after epoch `e` and resumed (which starts its data at epoch `e + 1`:
`RunFolder.resume_epoch`) sees the batches an uninterrupted run sees, and
under `--deterministic` ends with its weights bit for bit.
"""

import tensorflow as tf

# The graph seed each epoch's pipeline is traced under: any fixed value but
# 0. tf.data compares a seed with 0 in Python while tracing, which a tensor
# seed (`seed + epoch`) cannot answer; with a graph seed that is not 0 the
# comparison stops before it reaches the tensor.
EPOCH_GRAPH_SEED = 87654321


def epochs_of(one_epoch, epochs, first_epoch=0):
    """Epochs `first_epoch` to `epochs - 1` of training batches, for `fit`.

    Args:
        one_epoch: function from the epoch (an int64 scalar tensor) to that
            epoch's `tf.data.Dataset` of batches; its random draws must be
            seeded from the epoch (e.g. `seed + epoch`), and every epoch must
            have the same number of batches (`batches_per_epoch`).
        epochs: int. The epochs of the whole run.
        first_epoch: int. The first epoch yielded (a resumed run's first
            untrained one). Defaults to `0`.

    Returns:
        A `tf.data.Dataset` of the epochs' batches one after the other,
        repeated past the last (`fit` reads `steps_per_epoch` batches an
        epoch; the repeat only keeps Keras from warning that the data ran
        out as the last epoch ends).
    """

    def traced(epoch):
        tf.random.set_seed(EPOCH_GRAPH_SEED)  # this function's graph only
        return one_epoch(epoch)

    data = tf.data.Dataset.range(first_epoch, epochs).flat_map(traced)
    return data.repeat().prefetch(tf.data.AUTOTUNE)


def first_epoch(resume_epoch, epochs, first=0):
    """The epoch a resumed run's data start at among epochs `first` to
    `epochs - 1` (a stage of a schedule): the first untrained one
    (`resume_epoch`, a run folder's), or the stage's last if that was
    trained too (`fit` then trains nothing, but builds the model from a
    batch, so the data must still yield one)."""
    return min(max(resume_epoch, first), epochs - 1)


def batches_per_epoch(one_epoch):
    """The number of batches of an epoch of `one_epoch` (epoch 0's): its
    cardinality where tf.data knows it, else counted by one pass."""

    @tf.function
    def count():
        tf.random.set_seed(EPOCH_GRAPH_SEED)
        data = one_epoch(tf.constant(0, tf.int64))
        known = data.cardinality()
        if known >= 0:
            return known
        return data.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)

    return int(count())
