import gzip
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data import distortions, mnist
from tests.references import shuffled_order

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "mnist")
TRAIN_IMAGES_MD5 = "6bbc9ace898e44ae57da46a324031adb"
# The image corners of P, in its parameters' order (x, y pixel centres).
CORNERS = np.array([[0, 0], [27, 0], [27, 27], [0, 27]], np.float64)
IDENTITY = {"R": [0.0], "RTS": [0.0, 1.0, 0.0, 0.0], "P": [1.0] + [0.0] * 8, "E": [0.0] * 32}


def _idx_bytes(array, code=0x08):
    array = np.asarray(array)
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data, compress=False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _write_mnist_folder(folder, num_images=3, compress=True):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, num_images, dtype=np.uint8)
        ext = ".gz" if compress else ""
        _write(folder / f"{stem}-images-idx3-ubyte{ext}", _idx_bytes(images), compress)
        _write(folder / f"{stem}-labels-idx1-ubyte{ext}", _idx_bytes(labels), compress)
        arrays[split] = images, labels
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array, code",
    [
        (np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([-5, 0, 70000], np.int32), 0x0C),
        (np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), 0x0D),
    ],
)
def test_read_idx_raw_and_gzip(tmp_path, array, code, compress):
    path = _write(tmp_path / "x-idx", _idx_bytes(array, code), compress)
    result = mnist.read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    "data, message",
    [
        (_idx_bytes(np.zeros((2, 5), np.uint8))[:-3], "truncated"),
        (_idx_bytes(np.zeros((2, 5), np.uint8))[:9], "truncated"),
        (b"\x00\x00", "truncated"),
        (_idx_bytes(np.zeros(4, np.uint8)) + b"\x00", "after the data"),
        (b"\x01\x02" + _idx_bytes(np.zeros(4, np.uint8))[2:], "magic"),
        (_idx_bytes(np.zeros(4, np.uint8), code=0x07), "dtype code"),
    ],
)
def test_read_idx_bad_file_names_file(tmp_path, data, message):
    path = _write(tmp_path / "bad-idx1-ubyte", data)
    with pytest.raises(ValueError, match=message) as info:
        mnist.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_or_missing_gzip_names_file(tmp_path):
    data = gzip.compress(_idx_bytes(np.arange(1000, dtype=np.uint8)))
    path = _write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(ValueError, match="gzip") as info:
        mnist.read_idx(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="does not exist"):
        mnist.read_idx(tmp_path / "missing.gz")


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_folder(tmp_path, compress):
    arrays = _write_mnist_folder(tmp_path, compress=compress)
    for split in ("train", "test"):
        images, labels, used = mnist.load_mnist(tmp_path, split, return_source=True)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
        assert used == f"folder:{tmp_path}"


def test_load_mnist_environment_variable_and_errors(tmp_path, monkeypatch):
    arrays = _write_mnist_folder(tmp_path)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    images, _, used = mnist.load_mnist(split="test", return_source=True)
    np.testing.assert_array_equal(images, arrays["test"][0])
    assert used == f"folder:{tmp_path}"
    with pytest.raises(ValueError, match="split"):
        mnist.load_mnist(tmp_path, split="val")
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match=mnist.ENV_VAR):
        mnist.load_mnist(split="test")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        mnist.load_mnist(tmp_path, split="test")
    with pytest.raises(ValueError, match="not a folder"):
        mnist.load_mnist(tmp_path / "nowhere")


def test_load_mnist_default_finds_shared_folder(tmp_path, monkeypatch):
    folder = tmp_path / "shared" / "data" / "mnist"
    folder.mkdir(parents=True)
    arrays = _write_mnist_folder(folder, compress=False)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    images, labels, used = mnist.load_mnist(return_source=True)
    np.testing.assert_array_equal(labels, arrays["train"][1])
    assert used == f"folder:{folder}"


@pytest.fixture(scope="module")
def real_mnist():
    if not os.path.isdir(MNIST):
        pytest.skip(f"MNIST not found at {MNIST}")
    return os.path.abspath(MNIST)


def test_real_mnist_files(real_mnist):
    with gzip.open(os.path.join(real_mnist, "train-images-idx3-ubyte.gz")) as f:
        assert hashlib.md5(f.read()).hexdigest() == TRAIN_IMAGES_MD5
    for split, count in (("train", 60000), ("test", 10000)):
        images, labels = mnist.load_mnist(real_mnist, split)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (count,)
        assert labels.min() == 0 and labels.max() == 9
        assert len(np.unique(labels)) == 10


@pytest.fixture(scope="module")
def digits():
    """64 real test digits, or blobs in the central 20x20 without the files."""
    if os.path.isdir(MNIST):
        images, labels = mnist.load_mnist(MNIST, "test")
        return images[:64], labels[:64]
    rng = np.random.default_rng(0)
    images = np.zeros((64, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (64, 20, 20)) * (rng.random((64, 20, 20)) < 0.3)
    return images, rng.integers(0, 10, 64).astype(np.uint8)


def _collect(dataset):
    images, labels = zip(*dataset.as_numpy_iterator())
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("distortion", distortions.DISTORTIONS)
def test_distorted_mnist_shapes_and_seeds(digits, distortion):
    size = distortions.distortion_image_size(distortion)
    dataset = distortions.distorted_mnist("train", distortion, seed=3, source=digits)
    assert dataset.element_spec[0].shape == (size, size, 1)
    assert dataset.element_spec[0].dtype == tf.float32
    assert dataset.element_spec[1].dtype == tf.int32
    assert len(dataset) == 64  # a known length: Keras' validation pass needs it
    images, labels = _collect(dataset)
    assert images.shape == (64, size, size, 1)
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.5
    np.testing.assert_array_equal(labels, digits[1])

    again, _ = _collect(distortions.distorted_mnist("train", distortion, seed=3, source=digits))
    np.testing.assert_array_equal(images, again)
    other, _ = _collect(distortions.distorted_mnist("train", distortion, seed=4, source=digits))
    assert np.abs(images - other).mean() > 0.01

    test_a, _ = _collect(distortions.distorted_mnist("test", distortion, seed=3, source=digits))
    test_b, _ = _collect(distortions.distorted_mnist("test", distortion, seed=3, source=digits))
    np.testing.assert_array_equal(test_a, test_b)
    # The same digits in the test split get other distortions than in train.
    assert np.abs(test_a - images).mean() > 0.01


@pytest.mark.parametrize("distortion", distortions.DISTORTIONS)
def test_identity_params_give_back_input(digits, distortion):
    images = digits[0][:8, ..., None].astype(np.float32) / 255
    out = distortions.apply_distortion(images, distortion, [IDENTITY[distortion]] * 8).numpy()
    if distortion == "RTS":
        assert out.shape == (8, 42, 42, 1)
        np.testing.assert_allclose(out[:, 7:35, 7:35], images, atol=1e-5)
        assert out.sum() == pytest.approx(images.sum(), rel=1e-5)
    else:
        np.testing.assert_allclose(out, images, atol=1e-5)


def _bar_angle(image):
    """Orientation of an image's mass in degrees, counter-clockwise as displayed."""
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    w = image / image.sum()
    x, y = xs - (w * xs).sum(), -(ys - (w * ys).sum())
    cxx, cyy, cxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
    return np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy))


def test_rotation_rotates_counter_clockwise():
    bar = np.zeros((1, 28, 28, 1), np.float32)
    bar[0, 13:15, 4:24] = 1
    assert abs(_bar_angle(bar[0, ..., 0])) < 1e-6
    for angle in (30.0, -60.0):
        out = distortions.apply_distortion(bar, "R", [[angle]]).numpy()[0, ..., 0]
        assert _bar_angle(out) == pytest.approx(angle, abs=1.0)
        assert out.sum() == pytest.approx(bar.sum(), rel=0.05)


def test_rts_digits_mostly_inside_canvas(digits):
    images = digits[0][..., None].astype(np.float32) / 255
    keys = np.stack([np.zeros(64), np.arange(64)], 1).astype(np.int64)
    params = distortions.sample_distortion_params("RTS", keys).numpy()
    assert np.all(np.abs(params[:, 0]) <= 45)
    assert np.all((params[:, 1] >= 0.7) & (params[:, 1] <= 1.2))
    out = distortions.apply_distortion(images, "RTS", params).numpy()
    assert out.shape == (64, 42, 42, 1)
    # Scaling by s multiplies the mass by s**2; what is missing fell off.
    inside = out.sum(axis=(1, 2, 3)) / (images.sum(axis=(1, 2, 3)) * params[:, 1] ** 2)
    assert inside.min() > 0.9


def test_param_ranges():
    keys = np.stack([np.full(500, 7), np.arange(500)], 1)
    r = distortions.sample_distortion_params("R", keys).numpy()
    assert r.min() >= -90 and r.max() <= 90 and r.max() - r.min() > 150
    p = distortions.sample_distortion_params("P", keys).numpy()
    assert np.all((p[:, 0] >= 0.75) & (p[:, 0] <= 1.0))
    assert np.abs(p[:, 1:]).max() <= 6 and 2.2 < p[:, 1:].std() < 3
    e = distortions.sample_distortion_params("E", keys).numpy()
    assert e.shape == (500, 32) and 1.3 < e.std() < 1.7


def _moved_corners(params):
    """The P quads `(N, 4, 2)` of `(N, 9)` params: scale, then corner offsets."""
    return 13.5 + params[:, :1, None] * (CORNERS - 13.5) + params[:, 1:].reshape(-1, 4, 2)


def test_projective_maps_moved_corners_to_corners():
    params = np.array([[0.8, 3, -2, -4, 1, 2, 5, -1, -3]], np.float32)
    h = distortions._corner_homographies(params).numpy()[0]
    moved = _moved_corners(params)[0]
    mapped = np.concatenate([moved, np.ones((4, 1))], 1) @ h.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], CORNERS, atol=1e-3)


def _quad_distance(quads, size=28):
    """Signed distance (px) of pixel centres to convex quads' edge lines, positive inside."""
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    points = np.stack([xs, ys], -1)[None, None]  # (1, 1, size, size, 2)
    start = quads[:, :, None, None]
    edges = np.roll(quads, -1, axis=1)[:, :, None, None] - start
    rel = points - start
    cross = edges[..., 0] * rel[..., 1] - edges[..., 1] * rel[..., 0]
    return (cross / np.linalg.norm(edges, axis=-1)).min(axis=1)


def _reference_projective_ones(quads, size=28):
    """A 28x28 image of ones warped onto `quads`: NumPy, from first principles.

    Each output pixel reads the input through the homography taking the
    quad's corners to the image's (solved here with NumPy), if it is on
    the quad's side of the horizon; bilinear sampling of ones with zero
    padding reads `a(u) * a(v)`, `a` falling from 1 to 0 over the pixel
    beyond each edge.
    """
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)])
    out = []
    for quad in quads:
        rows, rhs = [], []
        for (x, y), (u, v) in zip(quad, CORNERS):
            rows += [[x, y, 1, 0, 0, 0, -x * u, -y * u], [0, 0, 0, x, y, 1, -x * v, -y * v]]
            rhs += [u, v]
        h = np.append(np.linalg.solve(rows, rhs), 1.0).reshape(3, 3)
        side = np.sign(h[2] @ np.append(quad.mean(0), 1.0))
        u, v, w = h @ pixels
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = [np.clip(np.minimum(t + 1, size - t), 0, 1) for t in (u / w, v / w)]
        out.append(np.where(side * w > 0, weight[0] * weight[1], 0.0).reshape(size, size))
    return np.stack(out)


def _draw_in_graph(distortion, keys):
    """`sample_distortion_params`, traced afresh (so it reads the module's
    constants as they are now): in a graph its per-key `map_fn` runs once,
    not once a key in Python as it does eagerly."""
    return tf.function(distortions.sample_distortion_params)(distortion, tf.constant(keys))


def test_projective_draws_are_convex_and_the_digit_fills_them(monkeypatch):
    # At a corner sigma of 5 px about 1 in 300 first draws is not convex
    # (a warp would fold the image); 3,000 draws hold some, and every
    # kept one is convex.
    monkeypatch.setattr(distortions, "_P_SIGMA", 5.0)
    keys = np.stack([np.full(3000, 5), np.arange(3000)], 1)
    # With one try, a non-convex draw falls back to unmoved corners.
    monkeypatch.setattr(distortions, "_P_TRIES", 1)
    first = _draw_in_graph("P", keys).numpy()
    folded = np.all(first[:, 1:] == 0, axis=1)
    assert folded.any()
    monkeypatch.setattr(distortions, "_P_TRIES", 8)
    params = _draw_in_graph("P", keys).numpy()
    quads = _moved_corners(params)
    edges = np.roll(quads, -1, axis=1) - quads
    following = np.roll(edges, -1, axis=1)
    turns = edges[..., 0] * following[..., 1] - edges[..., 1] * following[..., 0]
    assert np.all(turns > 0)
    # Convex first draws are kept; the others are redrawn, not dropped.
    np.testing.assert_array_equal(params[~folded], first[~folded])
    assert np.all(np.abs(params[folded, 1:]).max(axis=1) > 0)
    # A draw whose homography, with h33 = 1, has w < 0 over the whole
    # quadrilateral: a sign-blind warp returned an empty image for it.
    flipped = [0.75, 6.07, 9.74, 7.42, -2.62, 3.57, -0.22, -4.36, 2.52]
    params = np.concatenate([params[:300], np.array([flipped], np.float32)])
    quads = _moved_corners(params)
    # The image warps onto its quadrilateral: ones inside, zeros beyond
    # the pixel of bilinear fall-off around it.
    ones = np.ones((len(params), 28, 28, 1), np.float32)
    out = distortions.apply_distortion(ones, "P", params).numpy()[..., 0]
    assert out[_quad_distance(quads) > 0.01].min() > 0.999
    np.testing.assert_allclose(out, _reference_projective_ones(quads), atol=2e-3)
    assert out[-1].sum() > 200  # the flipped draw's quadrilateral is ~320 px


def test_elastic_warp_moves_control_points_by_their_offsets():
    # A smooth image (x + 2y) sampled through the spline: at a control
    # point, the output reads the input at the point plus its offset.
    ys, xs = np.mgrid[:28, :28].astype(np.float32)
    image = (xs + 2 * ys)[None, :, :, None]
    dx = np.linspace(-1.5, 1.5, 16).astype(np.float32)
    dy = np.linspace(1.0, -1.0, 16).astype(np.float32)
    warped = distortions.apply_distortion(image, "E", np.concatenate([dx, dy])[None]).numpy()
    ticks = [0, 9, 18, 27]
    for k, (y, x) in enumerate((y, x) for y in ticks for x in ticks):
        if 0 < x < 27 and 0 < y < 27:  # the border reads zeros beyond the edge
            expected = (x + dx[k]) + 2 * (y + dy[k])
            np.testing.assert_allclose(warped[0, y, x, 0], expected, atol=1e-3)


def test_shuffle_seed_gives_a_seeded_permutation_of_the_same_digits(digits):
    images, labels = _collect(distortions.distorted_mnist("train", "RTS", seed=3, source=digits))
    mixed, mixed_labels = _collect(
        distortions.distorted_mnist("train", "RTS", seed=3, source=digits, shuffle_seed=7)
    )
    # Each example keeps its distortion (keyed by its index), only the order changes.
    order = shuffled_order(mixed, images)
    np.testing.assert_allclose(mixed, images[order], atol=1e-6)
    np.testing.assert_array_equal(mixed_labels, labels[order])
    assert sorted(order) == list(range(64)) and order != list(range(64))
    again = distortions.distorted_mnist("train", "RTS", 3, digits, shuffle_seed=tf.constant(7))
    np.testing.assert_array_equal(_collect(again)[1], mixed_labels)
    other = distortions.distorted_mnist("train", "RTS", 3, digits, shuffle_seed=8)
    assert not np.array_equal(_collect(other)[1], mixed_labels)
    with pytest.raises(TypeError, match="shuffle_seed must be an int"):
        distortions.distorted_mnist("train", "RTS", 3, digits, shuffle_seed=0.5)


def test_unknown_distortion_lists_accepted():
    with pytest.raises(ValueError, match="RTS"):
        distortions.distorted_mnist(distortion="X", source=(np.zeros((1, 28, 28)), np.zeros(1)))
    with pytest.raises(ValueError, match="'R', 'RTS', 'P', 'E'"):
        distortions.distortion_image_size("rts")
    assert [distortions.distortion_image_size(d) for d in distortions.DISTORTIONS] == [
        28,
        42,
        28,
        28,
    ]
