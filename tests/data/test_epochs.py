"""`data.epochs`: the data of epoch `e` are a function of the seed and `e`
alone, whichever epoch a run starts at."""

import numpy as np
import tensorflow as tf

from keras_segattn.data.epochs import batches_per_epoch, epochs_of, first_epoch


def shuffled(epoch):
    """An epoch of 10 numbers in 3 batches, shuffled and noised with seed
    `7 + epoch` (a stateful shuffle, and a stateful random stream)."""
    numbers = tf.data.Dataset.range(10).shuffle(10, seed=7 + epoch)
    noise = tf.data.Dataset.random(seed=7 + epoch).map(lambda n: n % 1000)
    return tf.data.Dataset.zip((numbers, noise)).batch(4)


def take(data, count):
    return [tuple(np.asarray(t).tolist() for t in batch) for batch in data.take(count)]


def test_an_epoch_is_the_same_whichever_epoch_the_data_start_at():
    steps = batches_per_epoch(shuffled)
    assert steps == 3
    whole = take(epochs_of(shuffled, 4), 4 * steps)
    for start in (1, 3):
        resumed = take(epochs_of(shuffled, 4, start), (4 - start) * steps)
        assert resumed == whole[start * steps :]
    epochs = [whole[e * steps : (e + 1) * steps] for e in range(4)]
    assert all(a != b for a, b in zip(epochs, epochs[1:]))  # each epoch its own draw
    assert sorted(n for batch in epochs[2] for n in batch[0]) == list(range(10))
    # Past the last epoch the data repeat (fit reads steps_per_epoch batches).
    assert len(take(epochs_of(shuffled, 1), 2 * steps)) == 2 * steps


def test_unknown_cardinality_is_counted():
    def filtered(epoch):
        return tf.data.Dataset.range(10).filter(lambda n: n % 3 > 0).batch(3)

    assert filtered(0).cardinality() == tf.data.UNKNOWN_CARDINALITY
    assert batches_per_epoch(filtered) == 2  # 6 numbers in batches of 3


def test_first_epoch_of_a_resumed_stage():
    assert first_epoch(0, 5) == 0 and first_epoch(2, 5) == 2
    assert first_epoch(5, 5) == 4  # all trained: the last, so fit still builds
    assert first_epoch(1, 8, first=3) == 3  # the second stage of a schedule
