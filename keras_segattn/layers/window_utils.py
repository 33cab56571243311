"""Helpers for the non-overlapping pooling windows shared by pool/unpool."""

import tensorflow as tf


def window_slices(inputs, pool_size, padding):
    """Splits `inputs` into its `ph * pw` window positions, row-major.

    Each element is a `(batch, h_out, w_out, channels)` strided slice, so a
    window is `[slices[i][b, y, x, c] for i]`. Reshaping to 6-D would be
    shorter but TFLite kernels stop at 5-D for several ops.
    """
    ph, pw = pool_size
    shape = tf.shape(inputs)
    height, width = shape[1], shape[2]
    if padding == "same":
        pad_h = (-height) % ph
        pad_w = (-width) % pw
        lowest = inputs.dtype.min
        inputs = tf.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], constant_values=lowest)
        out_h, out_w = (height + pad_h) // ph, (width + pad_w) // pw
    else:
        out_h, out_w = height // ph, width // pw
    return [
        inputs[:, dy : dy + out_h * ph : ph, dx : dx + out_w * pw : pw, :]
        for dy in range(ph)
        for dx in range(pw)
    ]


def interleave_windows(pieces, pool_size):
    """Inverse of `window_slices` (without the padding): one tensor back."""
    ph, pw = pool_size
    shape = tf.shape(pieces[0])
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    rows = []
    for dy in range(ph):
        row = tf.stack(pieces[dy * pw : (dy + 1) * pw], axis=3)
        rows.append(tf.reshape(row, [batch, height, width * pw, channels]))
    stacked = tf.stack(rows, axis=2)
    return tf.reshape(stacked, [batch, height * ph, width * pw, channels])


def unpool(values, switches, pool_size, reference=None):
    """Each value placed at its switch in its window, zeros elsewhere.

    With `reference` (the tensor that was pooled) the output has its height
    and width: what `"same"` padding added is cropped, what `"valid"`
    pooling dropped of an odd size comes back as zeros.
    """
    switches = tf.cast(switches, tf.int32)
    window = pool_size[0] * pool_size[1]
    pieces = [values * tf.cast(tf.equal(switches, i), values.dtype) for i in range(window)]
    outputs = interleave_windows(pieces, pool_size)
    if reference is not None:
        # Constant paddings keep the channel count static for TFLite.
        ph, pw = pool_size
        outputs = tf.pad(outputs, [[0, 0], [0, ph - 1], [0, pw - 1], [0, 0]])
        size = tf.shape(reference)
        outputs = outputs[:, : size[1], : size[2], :]
    return outputs
