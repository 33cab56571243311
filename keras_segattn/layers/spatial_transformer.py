"""Spatial transformer: localisation net, grid generators, bilinear sampler.

Coordinates follow the `align_corners=True` convention: a grid holds
`(x, y)` in `[-1, 1]`, where -1 and 1 are the centres of the corner pixels,
so normalised `x` is pixel column `(x + 1) * (width - 1) / 2`. An output of
size 1 along an axis samples the centre (0). The grids and the sampler are
built from `GATHER`, `MATMUL`/`FULLY_CONNECTED` and elementwise ops, which
TFLite runs without Flex. In TensorFlow, outside training, an affine warp
runs TensorFlow's fused `ImageProjectiveTransformV3` instead (`sample_affine`,
see `keras_segattn.core.kernels`), which TFLite runs only through Flex.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import fused_kernels
from keras_segattn.core.precision import keep_float
from keras_segattn.core.validation import check_int, check_size

TRANSFORMS = ("affine", "projective", "tps")

# Below this magnitude the projective divisor is clamped: those points lie
# on the horizon and land far outside the image, where the sampler reads
# zeros.
_PROJECTIVE_EPSILON = 1e-6


def _coordinate_dtype(dtype):
    # float16 coordinates would misplace samples by whole pixels on large
    # images, so grids are at least float32 whatever the image dtype.
    return tf.float64 if dtype == tf.float64 else tf.float32


def _normalized_coordinates(size, dtype):
    """Pixel centres of an axis of `size` pixels, in `[-1, 1]`.

    `(2j - (size - 1)) / (size - 1)` has an exact numerator and a single
    rounding, so the values are symmetric about 0 and bit-identical wherever
    they are recomputed: the sampler relies on that to make the identity
    warp, and mirrorings, exact.
    """
    size = tf.convert_to_tensor(size, tf.int32)
    n = tf.cast(size, dtype)
    j = tf.cast(tf.range(size), dtype)
    return (2.0 * j - (n - 1.0)) / tf.maximum(n - 1.0, 1.0)


def _homogeneous_target_grid(out_h, out_w, dtype):
    """`(3, out_h * out_w)`: rows x, y, 1 of every output pixel, row-major."""
    xs = _normalized_coordinates(out_w, dtype)
    ys = _normalized_coordinates(out_h, dtype)
    x = tf.tile(xs[None, :], [out_h, 1])
    y = tf.tile(ys[:, None], [1, out_w])
    ones = tf.ones([out_h, out_w], dtype)
    return tf.reshape(tf.stack([x, y, ones]), [3, out_h * out_w])


def _check_output_size(out_h, out_w):
    check_int(out_h, "out_h")
    check_int(out_w, "out_w")


def _check_theta(theta, size, transform):
    theta = tf.convert_to_tensor(theta)
    if not theta.dtype.is_floating:
        theta = tf.cast(theta, tf.float32)
    if theta.shape.rank != 2 or (theta.shape[-1] is not None and theta.shape[-1] != size):
        raise ValueError(
            f"A {transform} transform takes theta of shape (batch, {size}); "
            f"got theta with shape {tuple(theta.shape)}."
        )
    return theta


def affine_grid(theta, out_h, out_w):
    """Sampling grid of 2-D affine transforms.

    Each output pixel at normalised `(x, y)` reads the input at
    `A @ (x, y, 1)`, with `A = theta.reshape(2, 3)`, as in Jaderberg et al.

    Args:
        theta: float tensor of shape `(batch, 6)`. The rows of `A`:
            `(a, b, tx, c, d, ty)`. `(1, 0, 0, 0, 1, 0)` is the identity.
        out_h: int. Output height.
        out_w: int. Output width.

    Returns:
        A `(batch, out_h, out_w, 2)` grid of normalised `(x, y)` source
        positions for `bilinear_sample`.
    """
    _check_output_size(out_h, out_w)
    theta = _check_theta(theta, 6, "affine")
    target = _homogeneous_target_grid(out_h, out_w, theta.dtype)
    # One (2B, 3) @ (3, N) matmul: each product with an identity row adds
    # exact zeros, so the identity reproduces the target grid bit for bit.
    source = tf.matmul(tf.reshape(theta, [-1, 3]), target)
    source = tf.reshape(source, [-1, 2, out_h, out_w])
    return tf.transpose(source, [0, 2, 3, 1])


def projective_grid(theta, out_h, out_w):
    """Sampling grid of plane projective transforms (homographies).

    Each output pixel at normalised `(x, y)` reads the input at
    `(u / s, v / s)` where `(u, v, s) = H @ (x, y, 1)` and `H` is `theta`
    followed by a fixed 1, reshaped to 3x3.

    Args:
        theta: float tensor of shape `(batch, 8)`. The first 8 entries of
            `H`, row-major. `(1, 0, 0, 0, 1, 0, 0, 0)` is the identity.
        out_h: int. Output height.
        out_w: int. Output width.

    Returns:
        A `(batch, out_h, out_w, 2)` grid of normalised `(x, y)` source
        positions for `bilinear_sample`. Points on the horizon (`s` near
        0) map far outside the image; points beyond it (`s < 0`) are
        divided through like any other, as TensorFlow's
        `ImageProjectiveTransformV3` and OpenCV's `warpPerspective` do. At
        the output's centre `s = 1`, so a transform has to tilt far from
        the identity before the horizon enters the output.
    """
    _check_output_size(out_h, out_w)
    theta = _check_theta(theta, 8, "projective")
    target = _homogeneous_target_grid(out_h, out_w, theta.dtype)
    h = tf.concat([theta, tf.ones_like(theta[:, :1])], axis=1)
    source = tf.reshape(tf.matmul(tf.reshape(h, [-1, 3]), target), [-1, 3, out_h * out_w])
    scale = source[:, 2]
    scale = tf.where(
        scale >= 0,
        tf.maximum(scale, _PROJECTIVE_EPSILON),
        tf.minimum(scale, -_PROJECTIVE_EPSILON),
    )
    xy = source[:, :2] / scale[:, None]
    return tf.transpose(tf.reshape(xy, [-1, 2, out_h, out_w]), [0, 2, 3, 1])


def _normalize_grid_size(grid_size):
    pair = (grid_size, grid_size) if isinstance(grid_size, (int, np.integer)) else grid_size
    try:
        rows, cols = (int(g) for g in pair)
    except (TypeError, ValueError):
        rows = cols = 0
    if rows < 2 or cols < 2:
        raise ValueError(
            "tps_grid_size must be an int >= 2 or a tuple (rows, cols) of ints >= 2; "
            f"got tps_grid_size={grid_size!r}."
        )
    return rows, cols


def tps_control_points(grid_size=4):
    """A regular grid of thin-plate-spline control points over `[-1, 1]^2`.

    Args:
        grid_size: int or tuple `(rows, cols)`, each at least 2. Defaults to
            `4` (the paper's 16 points).

    Returns:
        A float64 NumPy array `(rows * cols, 2)` of `(x, y)`, row-major.
    """
    rows, cols = _normalize_grid_size(grid_size)
    xs = (2.0 * np.arange(cols) - (cols - 1)) / (cols - 1)
    ys = (2.0 * np.arange(rows) - (rows - 1)) / (rows - 1)
    x, y = np.meshgrid(xs, ys)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def _tps_kernel(squared_distances):
    # U(r) = r^2 log r^2, with its limit 0 at r = 0.
    safe = np.where(squared_distances > 0, squared_distances, 1.0)
    return np.where(squared_distances > 0, squared_distances * np.log(safe), 0.0)


def tps_basis(control_points, out_h, out_w):
    """The constant `(K, out_h * out_w)` thin-plate-spline interpolation matrix.

    Row `k` is the spline that is 1 at control point `k` and 0 at the
    others, evaluated at every output pixel (row-major): the spline through
    values `v` is `v @ basis`. Solved once in float64 NumPy, so a TPS warp
    costs one matmul at run time.

    Args:
        control_points: array `(K, 2)` of normalised `(x, y)`, not all on a
            line.
        out_h: int. Output height.
        out_w: int. Output width.

    Returns:
        A float64 NumPy array `(K, out_h * out_w)`.
    """
    _check_output_size(out_h, out_w)
    points = np.asarray(control_points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(
            "control_points must be an array (K, 2) with K >= 3; "
            f"got shape {np.shape(control_points)}."
        )
    k = len(points)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = _tps_kernel(np.sum((points[:, None] - points[None]) ** 2, axis=-1))
    system[:k, k] = system[k, :k] = 1.0
    system[:k, k + 1 :] = points
    system[k + 1 :, :k] = points.T
    # Column k of the inverse's first K columns gives the kernel weights and
    # affine part of the spline through the k-th unit vector.
    coefficients = np.linalg.solve(system, np.eye(k + 3)[:, :k])
    xs = (2.0 * np.arange(out_w) - (out_w - 1)) / max(out_w - 1, 1)
    ys = (2.0 * np.arange(out_h) - (out_h - 1)) / max(out_h - 1, 1)
    x, y = np.meshgrid(xs, ys)
    targets = np.stack([x.ravel(), y.ravel()], axis=1)
    features = np.concatenate(
        [
            _tps_kernel(np.sum((targets[:, None] - points[None]) ** 2, axis=-1)),
            np.ones((len(targets), 1)),
            targets,
        ],
        axis=1,
    )
    return (features @ coefficients).T


def _tps_grid_from_basis(theta, basis, out_h, out_w):
    k = basis.shape[0]
    theta = _check_theta(theta, 2 * k, "tps")
    offsets = tf.transpose(tf.reshape(theta, [-1, k, 2]), [0, 2, 1])
    displacement = tf.matmul(tf.reshape(offsets, [-1, k]), tf.constant(basis, theta.dtype))
    displacement = tf.transpose(tf.reshape(displacement, [-1, 2, out_h, out_w]), [0, 2, 3, 1])
    # Identity plus the interpolated offsets, rather than interpolating the
    # moved control points: zero offsets then give the target grid exactly.
    identity = tf.transpose(
        tf.reshape(_homogeneous_target_grid(out_h, out_w, theta.dtype)[:2], [2, out_h, out_w]),
        [1, 2, 0],
    )
    return identity[None] + displacement


def tps_grid(theta, control_points, out_h, out_w):
    """Sampling grid of a thin-plate-spline warp.

    Control point `k` of the output is read from the input at
    `control_points[k] + theta[:, 2k : 2k + 2]`; other pixels follow the
    thin-plate spline (kernel `U(r) = r^2 log r^2`) through those points.

    Args:
        theta: float tensor `(batch, 2 * K)`. Interleaved `(dx, dy)` offsets
            of the control points' source positions. Zeros are the identity.
        control_points: array `(K, 2)` of normalised `(x, y)`, e.g.
            `tps_control_points(4)`.
        out_h: int. Output height.
        out_w: int. Output width.

    Returns:
        A `(batch, out_h, out_w, 2)` grid of normalised `(x, y)` source
        positions for `bilinear_sample`.
    """
    return _tps_grid_from_basis(theta, tps_basis(control_points, out_h, out_w), out_h, out_w)


def _pixel_coordinates(grid_axis, size, out_size, axis):
    """Pixel positions of one grid axis in an input axis of `size` pixels.

    Computes `base + (g - g_identity) * (size - 1) / 2`, which is
    `(g + 1) * (size - 1) / 2` in exact arithmetic. Written the direct way,
    float rounding lands identity samples a few ulps off the pixel centres,
    so the "identity" would blend neighbours; written relative to the
    identity grid, `g == g_identity` gives whole pixel indices exactly.
    """
    dtype = grid_axis.dtype
    size_f = tf.cast(size, dtype)
    out_f = tf.cast(out_size, dtype)
    half = (size_f - 1.0) / 2.0
    step = (size_f - 1.0) / tf.maximum(out_f - 1.0, 1.0)
    # A single output pixel sits at the centre, like its identity coordinate.
    offset = tf.where(tf.equal(out_size, 1), half, tf.zeros_like(half))
    base = tf.cast(tf.range(out_size), dtype) * step + offset
    identity = _normalized_coordinates(out_size, dtype)
    shape = [1, -1, 1] if axis == 1 else [1, 1, -1]
    base, identity = tf.reshape(base, shape), tf.reshape(identity, shape)
    return base + (grid_axis - identity) * half


def bilinear_sample(images, grid):
    """Samples `images` at `grid` with bilinear interpolation and zero padding.

    The sampler of Jaderberg et al.: each output value is the bilinear blend
    of the 4 input pixels around its source position, with pixels outside
    the image read as 0. Differentiable with respect to `images` and
    `grid`. An identity grid of the input's size returns `images` exactly.

    Each of the 4 neighbours is one `GATHER` over all samples from a
    zero-bordered copy of the images flattened to `(batch * rows * cols,
    channels)`, so TFLite runs it with builtin ops and out-of-image
    neighbours need no masks. (A single gather of all 4 stacked neighbours
    measured 1.1x-3x slower on CPU: the stacking and the reduction over the
    size-4 axis cost more than the gathers saved.)

    Args:
        images: float tensor `(batch, height, width, channels)`.
        grid: float tensor `(batch, out_h, out_w, 2)` of normalised `(x, y)`
            source positions (align-corners convention, see the module).

    Returns:
        A `(batch, out_h, out_w, channels)` tensor of the dtype of `images`.

    Examples:
        >>> images = np.random.rand(2, 5, 7, 3).astype("float32")
        >>> theta = np.tile([[1.0, 0, 0, 0, 1, 0]], (2, 1)).astype("float32")
        >>> out = bilinear_sample(images, affine_grid(theta, 5, 7))
        >>> bool(np.all(out.numpy() == images))
        True
    """
    images = tf.convert_to_tensor(images)
    grid = tf.convert_to_tensor(grid)
    if images.shape.rank != 4:
        raise ValueError(
            f"images must be 4-D (batch, height, width, channels); got shape {images.shape}."
        )
    if grid.shape.rank != 4 or grid.shape[-1] not in (2, None):
        raise ValueError(f"grid must be (batch, out_h, out_w, 2); got shape {grid.shape}.")
    grid = tf.cast(grid, _coordinate_dtype(grid.dtype))
    dtype = grid.dtype
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = images.shape[-1] if images.shape[-1] is not None else shape[3]
    grid_shape = tf.shape(grid)
    out_h, out_w = grid_shape[1], grid_shape[2]

    x = _pixel_coordinates(grid[..., 0], width, out_w, axis=2)
    y = _pixel_coordinates(grid[..., 1], height, out_h, axis=1)
    # Beyond one pixel outside the image every neighbour is border, so the
    # clip changes no value; it keeps far (or infinite) positions castable.
    x = tf.clip_by_value(x, -2.0, tf.cast(width, dtype) + 1.0)
    y = tf.clip_by_value(y, -2.0, tf.cast(height, dtype) + 1.0)
    x0, y0 = tf.floor(x), tf.floor(y)
    wx1, wy1 = x - x0, y - y0
    wx0, wy0 = 1.0 - wx1, 1.0 - wy1

    # Indices into the image padded by one zero pixel on every side; the
    # clip sends every outside neighbour onto that border (and keeps a NaN
    # position, whose int cast is undefined, from indexing out of range).
    padded_w = width + 2
    ix0 = tf.clip_by_value(tf.cast(x0, tf.int32) + 1, 0, width + 1)
    ix1 = tf.clip_by_value(tf.cast(x0, tf.int32) + 2, 0, width + 1)
    iy0 = tf.clip_by_value(tf.cast(y0, tf.int32) + 1, 0, height + 1)
    iy1 = tf.clip_by_value(tf.cast(y0, tf.int32) + 2, 0, height + 1)
    start = tf.reshape(tf.range(batch) * ((height + 2) * padded_w), [-1, 1, 1])
    row0, row1 = start + iy0 * padded_w, start + iy1 * padded_w
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), [-1, channels])
    output = 0
    for index, weight in (
        (row0 + ix0, wy0 * wx0),
        (row0 + ix1, wy0 * wx1),
        (row1 + ix0, wy1 * wx0),
        (row1 + ix1, wy1 * wx1),
    ):
        output += tf.gather(flat, index) * tf.cast(weight, images.dtype)[..., None]
    return output


def _affine_pixel_transform(theta, in_size, out_size):
    """`ImageProjectiveTransformV3`'s 8 parameters for normalised `theta`.

    Output pixel `(x, y)` reads input pixel `(a0 x + a1 y + a2, b0 x + b1 y +
    b2)`. The ratios `(in - 1) / (out - 1)` are divided once, so the
    identity at the input's size gives exactly `(1, 0, 0, 0, 1, 0)`.
    """
    dtype = theta.dtype
    (in_h, in_w), (out_h, out_w) = [
        [tf.cast(v, dtype) for v in pair] for pair in (in_size, out_size)
    ]

    def span(size):
        # Normalised x is 2 x / (size - 1) - 1, or the centre 0 at size 1.
        return tf.where(size > 1.0, 1.0, 0.0), tf.maximum(size - 1.0, 1.0)

    (used_w, steps_w), (used_h, steps_h) = span(out_w), span(out_h)
    a, b, tx, c, d, ty = tf.unstack(theta, axis=-1)
    half_w, half_h = (in_w - 1.0) / 2.0, (in_h - 1.0) / 2.0
    a0 = a * used_w * ((in_w - 1.0) / steps_w)
    a1 = b * used_h * ((in_w - 1.0) / steps_h)
    a2 = half_w * (tx + 1.0 - a * used_w - b * used_h)
    b0 = c * used_w * ((in_h - 1.0) / steps_w)
    b1 = d * used_h * ((in_h - 1.0) / steps_h)
    b2 = half_h * (ty + 1.0 - c * used_w - d * used_h)
    zeros = tf.zeros_like(a)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=-1)


def sample_affine(images, theta, out_h, out_w, training=False):
    """`bilinear_sample(images, affine_grid(theta, out_h, out_w))`, fused where it can be.

    In TensorFlow, outside training, the forward pass is TensorFlow's fused
    `ImageProjectiveTransformV3` (bilinear, zeros outside), about 2.5x
    faster on CPU. Its own gradient reaches neither `theta` nor, exactly,
    the images (it warps the gradient back by the inverse transform), so
    the gradient is the gather sampler's, recomputed: both formulations
    give the same values and the same gradients. In training the gather
    sampler runs alone (one forward pass rather than two), and a graph
    traced for TFLite uses it too.

    Args:
        images: float tensor `(batch, height, width, channels)`.
        theta: float tensor `(batch, 6)`, as in `affine_grid`.
        out_h: int. Output height.
        out_w: int. Output width.
        training: bool. Defaults to `False`.

    Returns:
        A `(batch, out_h, out_w, channels)` tensor of the dtype of `images`.
    """

    def gather_sampler(images, theta):
        return bilinear_sample(images, affine_grid(theta, out_h, out_w))

    images = tf.convert_to_tensor(images)
    theta = _check_theta(theta, 6, "affine")
    if training or not fused_kernels() or images.dtype == tf.float64:
        return gather_sampler(images, theta)

    @tf.custom_gradient
    def sample(images, theta):
        shape = tf.shape(images)
        transform = _affine_pixel_transform(
            tf.cast(theta, tf.float32), (shape[1], shape[2]), (out_h, out_w)
        )
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transform,
            output_shape=tf.stack([out_h, out_w]),
            fill_value=tf.constant(0.0),
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )

        def gradient(upstream):
            with tf.GradientTape() as tape:
                tape.watch([images, theta])
                recomputed = gather_sampler(images, theta)
            return tape.gradient(recomputed, [images, theta], output_gradients=upstream)

        return warped, gradient

    return sample(images, theta)


@keras.saving.register_keras_serializable(package="keras_segattn")
class SpatialTransformer(keras.layers.Layer):
    """Spatial transformer: predicts a warp of its input and applies it.

    A localisation network maps the images to features, a `Dense` layer
    regresses the transform parameters `theta` from them, a grid generator
    turns `theta` into source positions and a bilinear sampler reads the
    input there (Jaderberg et al., "Spatial Transformer Networks", NIPS
    2015). The regression layer starts at the identity (zero kernel,
    identity bias), so an untrained transformer passes its input through
    unchanged when `output_size` is the input's size. Runs in TFLite with
    builtin ops only.

    Args:
        transform: str. `"affine"` (6 parameters), `"projective"` (8, a
            homography with its last entry fixed to 1) or `"tps"` (a
            thin-plate spline, 2 offsets per control point; see `tps_grid`).
            Defaults to `"affine"`.
        output_size: int, tuple `(height, width)` or `None`. Size of the
            transformed images. `None` keeps the input size, which must
            then be static. Defaults to `None`.
        localization: a Keras layer or model, or `None`. Maps the images to
            features of any rank (flattened; all but the batch dimension
            must be static). `None` builds the paper's ST-CNN design: 2x
            average-pool, two 5x5 convolutions with 20 filters, 2x max-pool
            and `Dense(20, "relu")`, which needs a static input size.
            Defaults to `None`.
        tps_grid_size: int or tuple `(rows, cols)`, each at least 2. The
            regular grid of TPS control points. Defaults to `4` (16 points,
            as in the paper).
        regression: bool. Whether the layer adds its own identity-initialised
            `Dense` regression of `theta`. With `False`, the `localization`
            output is `theta` itself and must have exactly 6, 8 or
            `2 * rows * cols` features. Defaults to `True`.

    Call arguments:
        images: a `(batch, height, width, channels)` tensor.

    Returns:
        A tuple `(transformed, theta)`: the `(batch, out_h, out_w,
        channels)` warped images and the `(batch, parameters)` transform.

    Examples:
        >>> images = keras.Input((60, 60, 1))
        >>> warped, theta = SpatialTransformer("affine", output_size=30)(images)
        >>> warped.shape, theta.shape
        ((None, 30, 30, 1), (None, 6))
    """

    def __init__(
        self,
        transform="affine",
        output_size=None,
        localization=None,
        tps_grid_size=4,
        regression=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}; got transform={transform!r}.")
        self.transform = transform
        self.output_size = check_size(output_size, "output_size", none_ok=True)
        self.tps_grid_size = _normalize_grid_size(tps_grid_size)
        self.regression = bool(regression)
        if localization is not None and not isinstance(localization, keras.layers.Layer):
            raise ValueError(
                "localization must be a Keras layer or model, or None; "
                f"got localization={localization!r}."
            )
        if localization is None and not self.regression:
            raise ValueError(
                "regression=False makes the localization network output theta, so it "
                "needs a localization network; got localization=None."
            )
        self._custom_localization = localization is not None
        self.localization = localization
        if transform == "affine":
            self._identity = np.array([1, 0, 0, 0, 1, 0], np.float32)
        elif transform == "projective":
            self._identity = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)
        else:
            self._identity = np.zeros(2 * self.tps_grid_size[0] * self.tps_grid_size[1], np.float32)

    @property
    def num_parameters(self):
        """The size of `theta`: 6, 8 or twice the number of control points."""
        return len(self._identity)

    def _resolve_output_size(self, input_shape):
        if self.output_size is not None:
            return self.output_size
        return tuple(input_shape[1:3])

    def _default_localization(self, input_shape):
        if None in tuple(input_shape[1:]):
            raise ValueError(
                "The default localization network flattens its features, so it needs a "
                f"static input size; got input shape {tuple(input_shape)}. Pass "
                "localization= (e.g. ending in global pooling)."
            )
        layers = keras.layers
        policy = self.dtype_policy
        return keras.Sequential(
            [
                keras.Input(shape=tuple(input_shape[1:])),
                # The paper's ST-CNN localises on a 2x downsampled input.
                layers.AveragePooling2D(2, padding="same", dtype=policy),
                layers.Conv2D(20, 5, padding="same", activation="relu", dtype=policy),
                layers.Conv2D(20, 5, padding="same", activation="relu", dtype=policy),
                layers.MaxPooling2D(2, padding="same", dtype=policy),
                layers.Flatten(dtype=policy),
                layers.Dense(20, activation="relu", dtype=policy),
            ],
            name="localization",
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                "SpatialTransformer expects 4-D images (batch, height, width, channels); "
                f"got input shape {input_shape}."
            )
        out_h, out_w = self._resolve_output_size(input_shape)
        if out_h is None or out_w is None:
            raise ValueError(
                "output_size=None keeps the input size, which must then be static; got "
                f"input shape {input_shape}. Pass output_size=(height, width)."
            )
        if self.localization is None:
            self.localization = self._default_localization(input_shape)
        elif not self.localization.built:
            self.localization.build(input_shape)
        spec = self.localization.compute_output_spec(
            keras.KerasTensor(input_shape, dtype=self.compute_dtype)
        )
        if not isinstance(spec, keras.KerasTensor):
            raise ValueError(
                "The localization network must return a single tensor; got "
                f"{keras.tree.map_structure(lambda t: t.shape, spec)} for localization="
                f"{self.localization.name!r}."
            )
        feature_dims = tuple(spec.shape[1:])
        if not feature_dims or None in feature_dims:
            raise ValueError(
                "The localization network's output size must be known when the layer is "
                f"built; localization={self.localization.name!r} gives shape "
                f"{tuple(spec.shape)} for input shape {input_shape}."
            )
        self._num_features = int(np.prod(feature_dims))
        self._feature_dims = feature_dims
        self._built_output_size = (int(out_h), int(out_w))
        if self.regression:
            self.regressor = keras.layers.Dense(
                self.num_parameters,
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(self._identity),
                dtype=self.dtype_policy,
                name="regression",
            )
            self.regressor.build((input_shape[0], self._num_features))
        elif self._num_features != self.num_parameters:
            raise ValueError(
                f"With regression=False, localization={self.localization.name!r} must output "
                f"the {self.num_parameters} parameters of transform={self.transform!r}"
                + (f" with tps_grid_size={self.tps_grid_size}" if self.transform == "tps" else "")
                + f"; it outputs shape {tuple(spec.shape)}."
            )
        if self.transform == "tps":
            self._tps_basis = tps_basis(
                tps_control_points(self.tps_grid_size), out_h, out_w
            ).astype(np.float32)

    def call(self, images, training=None):
        out_h, out_w = self._built_output_size
        features = self.localization(images)
        got = tuple(features.shape[1:])
        if None not in got and got != self._feature_dims:
            # A reshape would silently fold the extra features into the batch.
            raise ValueError(
                f"The localization network {self.localization.name!r} gives features of "
                f"shape {got} for images of shape {tuple(images.shape)}, but it was built "
                f"for {self._feature_dims}: its output size depends on the image size, so "
                "call the layer at the size it was built for (or end the localization "
                "network in global pooling)."
            )
        features = tf.reshape(features, [-1, self._num_features])
        theta = self.regressor(features) if self.regression else features
        theta = tf.cast(theta, self.compute_dtype)
        coordinates = tf.cast(theta, _coordinate_dtype(theta.dtype))
        with keep_float():  # int8 sampling coordinates would move whole pixels
            if self.transform == "affine":
                return sample_affine(images, coordinates, out_h, out_w, bool(training)), theta
            if self.transform == "projective":
                grid = projective_grid(coordinates, out_h, out_w)
            else:
                grid = _tps_grid_from_basis(coordinates, self._tps_basis, out_h, out_w)
            # A homography's pixel form can have a zero last entry, which the
            # fused kernel's 8 parameters cannot express: the gather sampler always.
            return bilinear_sample(images, grid), theta

    def compute_output_shape(self, input_shape):
        out_h, out_w = self._resolve_output_size(input_shape)
        return (
            (input_shape[0], out_h, out_w, input_shape[3]),
            (input_shape[0], self.num_parameters),
        )

    def get_config(self):
        config = super().get_config()
        localization = None
        if self._custom_localization:
            localization = keras.saving.serialize_keras_object(self.localization)
        config.update(
            {
                "transform": self.transform,
                "output_size": self.output_size,
                "localization": localization,
                "tps_grid_size": self.tps_grid_size,
                "regression": self.regression,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("localization") is not None:
            config["localization"] = keras.saving.deserialize_keras_object(config["localization"])
        return cls(**config)
