"""NumPy reference implementations the numeric layers are tested against."""

import numpy as np


def max_pool_with_argmax(x, pool=(2, 2), padding="valid"):
    """Loops over every window; ties go to the first position, row-major."""
    ph, pw = pool
    b, h, w, c = x.shape
    if padding == "same":
        oh, ow = -(-h // ph), -(-w // pw)
    else:
        oh, ow = h // ph, w // pw
    pooled = np.zeros((b, oh, ow, c), x.dtype)
    switches = np.zeros((b, oh, ow, c), np.int32)
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                for k in range(c):
                    best, best_pos = None, 0
                    for dy in range(ph):
                        for dx in range(pw):
                            y, xx = i * ph + dy, j * pw + dx
                            if y >= h or xx >= w:
                                continue
                            v = x[n, y, xx, k]
                            if best is None or v > best:
                                best, best_pos = v, dy * pw + dx
                    pooled[n, i, j, k] = best
                    switches[n, i, j, k] = best_pos
    return pooled, switches


def max_unpool(values, switches, pool=(2, 2), output_size=None):
    ph, pw = pool
    b, h, w, c = values.shape
    out = np.zeros((b, h * ph, w * pw, c), values.dtype)
    for n, i, j, k in np.ndindex(b, h, w, c):
        dy, dx = divmod(int(switches[n, i, j, k]), pw)
        out[n, i * ph + dy, j * pw + dx, k] = values[n, i, j, k]
    if output_size is not None:
        out = out[:, : output_size[0], : output_size[1]]
    return out


def confusion_matrix(y_true, y_pred, num_classes, ignore_class=None):
    cm = np.zeros((num_classes, num_classes), np.int64)
    for t, p in zip(y_true.ravel(), y_pred.ravel()):
        if ignore_class is not None and t == ignore_class:
            continue
        cm[t, p] += 1
    return cm
