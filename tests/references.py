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


def reward_to_go_advantages_reference(token_log_likelihood, targets, baseline, sampled, pad_id=0):
    """Loop form of `reward_to_go_advantages`: per step, the log-likelihood
    of the words from it on minus `baseline` per token, divided by the
    standard deviation over the sampled non-pad steps."""
    mask = targets != pad_id
    advantages = np.zeros(targets.shape, np.float64)
    for n, t in np.ndindex(*targets.shape):
        if mask[n, t]:
            rest = mask[n, t:]
            advantages[n, t] = token_log_likelihood[n, t:][rest].sum() - baseline * rest.sum()
    scored = advantages[mask & sampled]
    return advantages / max(scored.std(), 1e-3)


def anchors_reference(height, width, scales, aspect_ratios, stride):
    """Faster R-CNN anchors, one position and one anchor at a time (float64).

    Centres at `((x + 0.5) * stride, (y + 0.5) * stride)`; ratio = h / w,
    area = scale ** 2; order (y, x, ratio, scale).
    """
    rows = []
    for y in range(height):
        for x in range(width):
            cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
            for ratio in aspect_ratios:
                for scale in scales:
                    w, h = scale / np.sqrt(ratio), scale * np.sqrt(ratio)
                    rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows, np.float64).reshape(-1, 4)


def box_iou_reference(boxes1, boxes2):
    """Pairwise IoU of `"xyxy"` boxes with loops; 0 where the union is empty."""
    boxes1 = np.asarray(boxes1, np.float64)
    boxes2 = np.asarray(boxes2, np.float64)
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
            ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def encode_boxes_reference(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """py-faster-rcnn's `bbox_transform` without the `+ 1` (float64)."""
    boxes = np.asarray(boxes, np.float64)
    anchors = np.asarray(anchors, np.float64)
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    bx, by = boxes[..., 0] + bw / 2, boxes[..., 1] + bh / 2
    return np.stack(
        [wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * np.log(bw / aw), wh * np.log(bh / ah)],
        axis=-1,
    )


def decode_boxes_reference(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clip_value=None):
    """py-faster-rcnn's `bbox_transform_inv` without the `+ 1`, Detectron's clip."""
    deltas = np.asarray(deltas, np.float64) / np.asarray(weights, np.float64)
    anchors = np.asarray(anchors, np.float64)
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    dw, dh = deltas[..., 2], deltas[..., 3]
    if clip_value is not None:
        dw, dh = np.minimum(dw, clip_value), np.minimum(dh, clip_value)
    cx, cy = deltas[..., 0] * aw + ax, deltas[..., 1] * ah + ay
    w, h = np.exp(dw) * aw, np.exp(dh) * ah
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def match_anchors_reference(
    anchors, gt_boxes, gt_valid, positive_iou=0.7, negative_iou=0.3, inside=None, tie_atol=1e-6
):
    """py-faster-rcnn's `anchor_target_layer` labelling, anchor by anchor.

    Anchors not `inside` are -1 and take no part; invalid boxes are never
    matched; every box's best anchors (IoU within `tie_atol` of its best,
    which must be > 0) are positive. Returns `(labels, matched_gt)`.
    """
    anchors = np.asarray(anchors, np.float64)
    num_anchors, num_gt = len(anchors), len(gt_boxes)
    inside = np.ones(num_anchors, bool) if inside is None else np.asarray(inside, bool)
    valid = np.asarray(gt_valid, bool)
    iou = box_iou_reference(anchors, gt_boxes) if num_gt else np.zeros((num_anchors, 0))
    labels = np.full(num_anchors, -1, np.int32)
    matched = np.full(num_anchors, -1, np.int32)
    for i in range(num_anchors):
        if not inside[i]:
            continue
        best, best_j = -1.0, -1
        for j in range(num_gt):
            if valid[j] and iou[i, j] > best:
                best, best_j = iou[i, j], j
        if best > 0:
            matched[i] = best_j
        if best < negative_iou:
            labels[i] = 0
        if best >= positive_iou:
            labels[i] = 1
    for j in range(num_gt):
        if not valid[j]:
            continue
        column = np.where(inside, iou[:, j], -1.0)
        if column.max(initial=-1.0) > 0:
            labels[column >= column.max() - tie_atol] = 1
    return labels, matched


def _roi_align_bilinear(feature, y, x):
    """Detectron2's `bilinear_interpolate` for one point of a (H, W, C) map."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * feature[y_low, x_low]
        + hy * lx * feature[y_low, x_high]
        + ly * hx * feature[y_high, x_low]
        + ly * lx * feature[y_high, x_high]
    )


def roi_align_reference(
    features, boxes, output_size, sampling_ratio=2, spatial_scale=1 / 16, aligned=True
):
    """Detectron2's CPU `ROIAlignForward`, loop for loop, on NHWC features.

    `boxes` is `(batch, num_boxes, 4)` `(x1, y1, x2, y2)` in pixels. Like
    Detectron2, raises on a negative-size box with `aligned=True`, and takes
    `ceil(box size / output size)` samples when `sampling_ratio <= 0`.
    """
    features = np.asarray(features, np.float64)
    boxes = np.asarray(boxes, np.float64)
    out_h, out_w = output_size
    batch, num_boxes = boxes.shape[:2]
    out = np.zeros((batch, num_boxes, out_h, out_w, features.shape[3]))
    offset = 0.5 if aligned else 0.0
    for b, n in np.ndindex(batch, num_boxes):
        x1, y1, x2, y2 = boxes[b, n]
        start_w, start_h = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        end_w, end_h = x2 * spatial_scale - offset, y2 * spatial_scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if aligned:
            if roi_w < 0 or roi_h < 0:
                raise ValueError("ROIs in ROIAlign cannot have non-negative size!")
        else:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / out_h, roi_w / out_w
        grid_h = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_h / out_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(np.ceil(roi_w / out_w))
        count = max(grid_h * grid_w, 1)
        for ph, pw in np.ndindex(out_h, out_w):
            total = np.zeros(features.shape[3])
            for iy in range(grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    total += _roi_align_bilinear(features[b], y, x)
            out[b, n, ph, pw] = total / count
    return out


def crop_and_resize_image_gradient_reference(upstream, image_shape, boxes, box_indices):
    """The gradient of `tf.image.crop_and_resize` (bilinear, extrapolation
    0) to its image, sample by sample as its CPU kernel defines it: sample
    `(y, x)` of box `(y1, x1, y2, x2)` lies at `y1 * (H - 1) + y * (y2 - y1)
    * (H - 1) / (crop_h - 1)` (the box's centre for a crop of 1), and one
    outside `[0, H - 1]` reads the extrapolation value."""
    upstream = np.asarray(upstream, np.float64)
    _, height, width, _ = image_shape
    gradient = np.zeros(image_shape)
    crop_h, crop_w = upstream.shape[1:3]

    def positions(start, end, crops, size):
        if crops == 1:
            return [0.5 * (start + end) * (size - 1)]
        return [
            start * (size - 1) + i * (end - start) * (size - 1) / (crops - 1) for i in range(crops)
        ]

    for n, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, np.float64)):
        b = int(box_indices[n])
        for i, y in enumerate(positions(y1, y2, crop_h, height)):
            if not 0 <= y <= height - 1:
                continue
            top, bottom = int(np.floor(y)), int(np.ceil(y))
            for j, x in enumerate(positions(x1, x2, crop_w, width)):
                if not 0 <= x <= width - 1:
                    continue
                left, right = int(np.floor(x)), int(np.ceil(x))
                dy, dx = y - top, x - left
                g = upstream[n, i, j]
                gradient[b, top, left] += (1 - dy) * (1 - dx) * g
                gradient[b, top, right] += (1 - dy) * dx * g
                gradient[b, bottom, left] += dy * (1 - dx) * g
                gradient[b, bottom, right] += dy * dx * g
    return gradient


def _c_round(value):
    """C's round(): halves away from zero."""
    magnitude = abs(value)
    whole = np.floor(magnitude)
    whole += magnitude - whole >= 0.5
    return int(-whole if value < 0 else whole)


def roi_max_pool_reference(features, boxes, output_size, spatial_scale=1 / 16):
    """Fast R-CNN RoI max pooling (Caffe's `ROIPoolForward`) with exact bin bounds.

    Box coordinates are scaled in float32 and rounded like C's `round`; bin
    bounds use exact integer floor/ceil (Caffe's float32 ones can round
    across an integer); empty bins are 0.
    """
    features = np.asarray(features)
    boxes = np.asarray(boxes, np.float32)
    height, width = features.shape[1:3]
    out_h, out_w = output_size
    batch, num_boxes = boxes.shape[:2]
    out = np.zeros((batch, num_boxes, out_h, out_w, features.shape[3]), features.dtype)
    scale = np.float32(spatial_scale)
    for b, n in np.ndindex(batch, num_boxes):
        x1, y1, x2, y2 = (_c_round(np.float32(v) * scale) for v in boxes[b, n])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        for ph, pw in np.ndindex(out_h, out_w):
            h_start = min(max(ph * roi_h // out_h + y1, 0), height)
            h_end = min(max(-(-(ph + 1) * roi_h // out_h) + y1, 0), height)
            w_start = min(max(pw * roi_w // out_w + x1, 0), width)
            w_end = min(max(-(-(pw + 1) * roi_w // out_w) + x1, 0), width)
            if h_end <= h_start or w_end <= w_start:
                continue
            out[b, n, ph, pw] = features[b, h_start:h_end, w_start:w_end].max(axis=(0, 1))
    return out


def _nms_iou(a, b):
    """IoU as TensorFlow's NMS kernels compute it: corners in any order."""
    ya0, ya1 = sorted((a[0], a[2]))
    xa0, xa1 = sorted((a[1], a[3]))
    yb0, yb1 = sorted((b[0], b[2]))
    xb0, xb1 = sorted((b[1], b[3]))
    area_a = (ya1 - ya0) * (xa1 - xa0)
    area_b = (yb1 - yb0) * (xb1 - xb0)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    inter = max(min(ya1, yb1) - max(ya0, yb0), 0.0) * max(min(xa1, xb1) - max(xa0, xb0), 0.0)
    return inter / (area_a + area_b - inter)


def greedy_nms_reference(boxes, scores, max_output_size, iou_threshold, score_threshold=-np.inf):
    """Greedy NMS of one image: kept indices, highest score first.

    Candidates have `score > score_threshold`; ties in score go to the lower
    index; a candidate is dropped when its IoU with a kept box exceeds
    `iou_threshold`.
    """
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores, np.float64)
    candidates = [i for i in range(len(scores)) if scores[i] > score_threshold]
    order = sorted(candidates, key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if len(keep) == max_output_size:
            break
        if all(_nms_iou(boxes[i], boxes[j]) <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _grid_neighbours(position, size, grid_size):
    """The two classifiers around `position` (a cell index of `size` cells)
    and the weight of the second, as Hypercolumns' interpolation reads them."""
    u = (position + 0.5) * grid_size / size - 0.5
    u = min(max(u, 0.0), grid_size - 1.0)
    low = int(np.floor(u))
    high = min(low + 1, grid_size - 1)
    return low, high, u - low


def location_classifier_reference(hypercolumns, kernel, bias, grid_size):
    """Hypercolumns' location-specific classifiers, one pixel at a time.

    `hypercolumns` is `(M_h, M_w, D)`, `kernel` `(D, K * K)` and `bias`
    `(K * K,)` (classifier `i * K + j` at grid row `i`, column `j`). Each
    location scores its hypercolumn with the four classifiers of the grid
    cells around it and blends the four scores bilinearly by its position.
    """
    hypercolumns = np.asarray(hypercolumns, np.float64)
    height, width = hypercolumns.shape[:2]
    out = np.zeros((height, width))
    for y, x in np.ndindex(height, width):
        i0, i1, fy = _grid_neighbours(y, height, grid_size)
        j0, j1, fx = _grid_neighbours(x, width, grid_size)
        h = hypercolumns[y, x]

        def score(i, j, h=h):
            k = i * grid_size + j
            return float(h @ kernel[:, k] + bias[k])

        out[y, x] = (
            (1 - fy) * (1 - fx) * score(i0, j0)
            + (1 - fy) * fx * score(i0, j1)
            + fy * (1 - fx) * score(i1, j0)
            + fy * fx * score(i1, j1)
        )
    return out


def paste_mask_reference(mask, box, image_size):
    """One box-grid mask pasted into an image, pixel by pixel.

    Pixels whose centre lies in `[x1, x2) x [y1, y2)` read the mask
    bilinearly at `((x + 0.5 - x1) / (x2 - x1) * M_w - 0.5, ...)`, clamped
    to the mask; other pixels are 0.
    """
    mask = np.asarray(mask, np.float64)
    mask_h, mask_w = mask.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    out = np.zeros(image_size)
    for y, x in np.ndindex(*image_size):
        cy, cx = y + 0.5, x + 0.5
        if not (x1 <= cx < x2 and y1 <= cy < y2):
            continue
        v = min(max((cy - y1) / (y2 - y1) * mask_h - 0.5, 0.0), mask_h - 1.0)
        u = min(max((cx - x1) / (x2 - x1) * mask_w - 0.5, 0.0), mask_w - 1.0)
        r0, c0 = int(np.floor(v)), int(np.floor(u))
        r1, c1 = min(r0 + 1, mask_h - 1), min(c0 + 1, mask_w - 1)
        fy, fx = v - r0, u - c0
        out[y, x] = (
            (1 - fy) * (1 - fx) * mask[r0, c0]
            + (1 - fy) * fx * mask[r0, c1]
            + fy * (1 - fx) * mask[r1, c0]
            + fy * fx * mask[r1, c1]
        )
    return out


def crop_and_resize_masks_reference(masks, boxes, indices, size, sampling_ratio=2):
    """MNC's mask targets: each RoI's ground-truth mask, as a one-channel
    feature map, through Detectron2's RoIAlign (`aligned=True`, scale 1)."""
    masks = np.asarray(masks, np.float64)
    boxes = np.asarray(boxes, np.float64)
    batch, count = boxes.shape[:2]
    out = np.zeros((batch, count, size, size))
    for b, r in np.ndindex(batch, count):
        feature = masks[b, int(indices[b, r])][None, :, :, None]
        pooled = roi_align_reference(
            feature, boxes[b, r][None, None], (size, size), sampling_ratio, 1.0, aligned=True
        )
        out[b, r] = pooled[0, 0, :, :, 0]
    return out


def paste_masks_reference(masks, boxes, image_size):
    """Detectron2's `paste_masks_in_image`, one pixel at a time.

    Pixel `(y, x)` reads mask `m` bilinearly at `u = (x + 0.5 - x1) / (x2 -
    x1) * m_w - 0.5`, `v` likewise, cells outside the mask counting 0
    (`grid_sample`, `align_corners=False`, zero padding).
    """
    masks = np.asarray(masks, np.float64)
    boxes = np.asarray(boxes, np.float64)
    height, width = image_size
    batch, count, mask_h, mask_w = masks.shape
    out = np.zeros((batch, count, height, width))
    for b, d in np.ndindex(batch, count):
        x1, y1, x2, y2 = boxes[b, d]
        for y, x in np.ndindex(height, width):
            v = (y + 0.5 - y1) / max(y2 - y1, 1e-3) * mask_h - 0.5
            u = (x + 0.5 - x1) / max(x2 - x1, 1e-3) * mask_w - 0.5
            v0, u0 = int(np.floor(v)), int(np.floor(u))
            total = 0.0
            for i, wy in ((v0, 1.0 - (v - v0)), (v0 + 1, v - v0)):
                for j, wx in ((u0, 1.0 - (u - u0)), (u0 + 1, u - u0)):
                    if 0 <= i < mask_h and 0 <= j < mask_w:
                        total += wy * wx * masks[b, d, i, j]
            out[b, d, y, x] = total
    return out


def shuffled_order(shuffled, reference):
    """For each of `shuffled`'s images, the index of the identical image in
    `reference` (the order a shuffle put `reference` in)."""
    flat = reference.reshape(len(reference), -1)
    return [int(np.argmin(np.abs(flat - x).max(1))) for x in shuffled.reshape(len(shuffled), -1)]
