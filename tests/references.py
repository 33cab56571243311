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
    oh, ow = output_size if output_size is not None else (h * ph, w * pw)
    out = np.zeros((b, max(h * ph, oh), max(w * pw, ow), c), values.dtype)
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


def _align_corners_coordinates(n):
    """Pixel centres in [-1, 1]; a single pixel sits at 0."""
    return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)


def _target_points(out_h, out_w):
    x, y = np.meshgrid(_align_corners_coordinates(out_w), _align_corners_coordinates(out_h))
    return x, y


def affine_grid_reference(theta, out_h, out_w):
    x, y = _target_points(out_h, out_w)
    grid = np.zeros((len(theta), out_h, out_w, 2))
    for n, t in enumerate(np.asarray(theta, np.float64)):
        a = t.reshape(2, 3)
        grid[n, ..., 0] = a[0, 0] * x + a[0, 1] * y + a[0, 2]
        grid[n, ..., 1] = a[1, 0] * x + a[1, 1] * y + a[1, 2]
    return grid


def projective_grid_reference(theta, out_h, out_w):
    x, y = _target_points(out_h, out_w)
    grid = np.zeros((len(theta), out_h, out_w, 2))
    for n, t in enumerate(np.asarray(theta, np.float64)):
        h = np.append(t, 1.0).reshape(3, 3)
        s = h[2, 0] * x + h[2, 1] * y + h[2, 2]
        grid[n, ..., 0] = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / s
        grid[n, ..., 1] = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / s
    return grid


def tps_grid_reference(theta, control_points, out_h, out_w):
    """Solves the TPS system per sample for the moved control points."""

    def kernel(d2):
        return np.where(d2 > 0, d2 * np.log(np.where(d2 > 0, d2, 1.0)), 0.0)

    c = np.asarray(control_points, np.float64)
    k = len(c)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = kernel(((c[:, None] - c[None]) ** 2).sum(-1))
    system[:k, k] = system[k, :k] = 1.0
    system[:k, k + 1 :] = c
    system[k + 1 :, :k] = c.T
    x, y = _target_points(out_h, out_w)
    p = np.stack([x.ravel(), y.ravel()], axis=1)
    u = kernel(((p[:, None] - c[None]) ** 2).sum(-1))
    grid = np.zeros((len(theta), out_h, out_w, 2))
    for n, t in enumerate(np.asarray(theta, np.float64)):
        source = c + t.reshape(k, 2)
        for axis in range(2):
            rhs = np.concatenate([source[:, axis], np.zeros(3)])
            coef = np.linalg.solve(system, rhs)
            values = u @ coef[:k] + coef[k] + coef[k + 1] * p[:, 0] + coef[k + 2] * p[:, 1]
            grid[n, ..., axis] = values.reshape(out_h, out_w)
    return grid


def bilinear_sample_reference(images, grid):
    """Per-sample loops; align-corners coordinates, zeros outside the image."""
    images = np.asarray(images, np.float64)
    grid = np.asarray(grid, np.float64)
    b, h, w, c = images.shape
    _, out_h, out_w, _ = grid.shape
    out = np.zeros((b, out_h, out_w, c))
    for n, i, j in np.ndindex(b, out_h, out_w):
        x = (grid[n, i, j, 0] + 1.0) * (w - 1) / 2.0
        y = (grid[n, i, j, 1] + 1.0) * (h - 1) / 2.0
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
            if 0 <= yy < h and 0 <= xx < w:
                weight = (1.0 - abs(x - xx)) * (1.0 - abs(y - yy))
                out[n, i, j] += weight * images[n, yy, xx]
    return out


def bahdanau_attention_reference(
    annotations,
    hidden,
    annotation_kernel,
    hidden_kernel,
    bias,
    score_kernel,
    gate_kernel=None,
    gate_bias=None,
    mask=None,
):
    """Show-Attend-and-Tell soft attention, one example and location at a time.

    `e_i = v . tanh(a_i W_a + h W_h + b)`, a softmax over the valid
    locations only (padded ones get weight 0; a row with none valid gets all
    zeros), `z = sum_i alpha_i a_i`, times `sigmoid(h . w_beta + b_beta)`
    when the gate weights are given. Returns `(context, weights)` in float64.
    """
    a = np.asarray(annotations, np.float64)
    h = np.asarray(hidden, np.float64)
    w_a, w_h = np.asarray(annotation_kernel, np.float64), np.asarray(hidden_kernel, np.float64)
    b, v = np.asarray(bias, np.float64), np.asarray(score_kernel, np.float64).reshape(-1)
    batch, locations, features = a.shape
    valid = np.ones((batch, locations), bool) if mask is None else np.asarray(mask).astype(bool)
    context = np.zeros((batch, features))
    weights = np.zeros((batch, locations))
    for n in range(batch):
        query = h[n] @ w_h + b
        logits = np.array([v @ np.tanh(a[n, i] @ w_a + query) for i in range(locations)])
        kept = np.flatnonzero(valid[n])
        if kept.size:
            e = np.exp(logits[kept] - logits[kept].max())
            weights[n, kept] = e / e.sum()
        for i in range(locations):
            context[n] += weights[n, i] * a[n, i]
        if gate_kernel is not None:
            gate = h[n] @ np.asarray(gate_kernel, np.float64).reshape(-1)
            gate += float(np.asarray(gate_bias, np.float64).reshape(-1)[0])
            context[n] *= 1.0 / (1.0 + np.exp(-gate))
    return context, weights


def caption_cross_entropy_reference(targets, logits, pad_id=0, per_token=False):
    """Per-caption softmax cross-entropy over the non-pad targets, in float64."""
    targets = np.asarray(targets)
    logits = np.asarray(logits, np.float64)
    losses = np.zeros(targets.shape[0])
    for n in range(targets.shape[0]):
        count = 0
        for t in range(targets.shape[1]):
            if targets[n, t] == pad_id:
                continue
            row = logits[n, t] - logits[n, t].max()
            losses[n] += np.log(np.exp(row).sum()) - row[targets[n, t]]
            count += 1
        if per_token and count:
            losses[n] /= count
    return losses


def doubly_stochastic_penalty_reference(attention, targets, weight, pad_id=0):
    """`weight * mean_n sum_i (1 - sum_{t: y_nt != pad} alpha_nti) ** 2`."""
    attention = np.asarray(attention, np.float64)
    targets = np.asarray(targets)
    total = 0.0
    for n in range(attention.shape[0]):
        coverage = np.zeros(attention.shape[2])
        for t in range(attention.shape[1]):
            if targets[n, t] != pad_id:
                coverage += attention[n, t]
        total += np.sum((1.0 - coverage) ** 2)
    return weight * total / attention.shape[0]
