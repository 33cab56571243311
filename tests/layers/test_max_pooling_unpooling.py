import numpy as np
import pytest

from keras_segattn.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from keras_segattn.testing import run_layer_test
from tests.references import max_pool_with_argmax, max_unpool


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("shape", [(3, 7, 9, 2), (2, 8, 6, 3), (2, 1, 5, 1)])
def test_pooling_matches_numpy_reference(rng, padding, shape):
    x = rng.normal(size=shape).astype("float32")
    pooled, switches = MaxPoolingWithArgmax2D(padding=padding)(x)
    ref_pooled, ref_switches = max_pool_with_argmax(x, padding=padding)
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(switches, ref_switches)


def test_ties_take_the_first_position_in_the_window(rng):
    # Small integers make ties frequent, including all-equal windows.
    x = rng.integers(0, 3, size=(2, 7, 7, 4)).astype("float32")
    for padding in ("valid", "same"):
        _, switches = MaxPoolingWithArgmax2D(padding=padding)(x)
        np.testing.assert_array_equal(switches, max_pool_with_argmax(x, padding=padding)[1])
    _, switches = MaxPoolingWithArgmax2D()(np.zeros((1, 2, 2, 1), "float32"))
    assert int(np.asarray(switches)[0, 0, 0, 0]) == 0


def test_non_square_pool_size(rng):
    x = rng.normal(size=(2, 7, 10, 3)).astype("float32")
    pooled, switches = MaxPoolingWithArgmax2D(pool_size=(3, 2), padding="same")(x)
    ref_pooled, ref_switches = max_pool_with_argmax(x, pool=(3, 2), padding="same")
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(switches, ref_switches)
    restored = MaxUnpooling2D(pool_size=(3, 2))([pooled, switches, x])
    np.testing.assert_array_equal(
        restored, max_unpool(ref_pooled, ref_switches, (3, 2), output_size=(7, 10))
    )


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("shape", [(3, 7, 9, 2), (2, 8, 6, 3)])
def test_unpooling_matches_numpy_reference(rng, shape, padding):
    x = rng.normal(size=shape).astype("float32")
    pooled, switches = MaxPoolingWithArgmax2D(padding=padding)(x)
    restored = MaxUnpooling2D()([pooled, switches, x])
    expected = max_unpool(np.asarray(pooled), np.asarray(switches), output_size=shape[1:3])
    np.testing.assert_array_equal(restored, expected)
    # Each kept value sits where it came from in x.
    kept = np.asarray(restored) != 0
    np.testing.assert_array_equal(np.asarray(restored)[kept], x[kept])


def test_pooling_layer_passes_shared_checks(rng):
    x = rng.normal(size=(2, 9, 6, 3)).astype("float32")
    run_layer_test(
        MaxPoolingWithArgmax2D,
        {"padding": "same"},
        x,
        expected_output_shape=[(2, 5, 3, 3), (2, 5, 3, 3)],
    )


def test_unpooling_layer_passes_shared_checks(rng):
    values = rng.normal(size=(2, 4, 3, 5)).astype("float32")
    switches = rng.integers(0, 4, size=(2, 4, 3, 5)).astype("int32")
    reference = np.zeros((2, 7, 6, 5), "float32")
    run_layer_test(
        MaxUnpooling2D, {}, [values, switches, reference], expected_output_shape=(2, 7, 6, 5)
    )


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="padding"):
        MaxPoolingWithArgmax2D(padding="full")
    with pytest.raises(ValueError, match="pool_size"):
        MaxUnpooling2D(pool_size=0)
    with pytest.raises(ValueError, match="same shape"):
        MaxUnpooling2D()([np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 3, 2, 3), "int32")])
