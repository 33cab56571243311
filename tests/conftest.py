import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# In CI a skip fails (tests/skip_policy.py); the hooks register by name here.
from tests.skip_policy import (  # noqa: E402, F401
    pytest_make_collect_report,
    pytest_runtest_makereport,
)

# One TensorFlow thread per test process, for speed: `make test` runs two
# processes on two cores. (Nothing needs it for correctness: RoIAlign's
# gradient, whose TensorFlow kernel raced on several threads, is the
# package's own; tests/layers/test_kernel_determinism.py checks every fused
# kernel's gradient on two threads.)
tf.config.threading.set_intra_op_parallelism_threads(1)

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(autouse=True)
def same_random_state(request):
    """Every test starts from the same random state (Python, NumPy,
    TensorFlow, Keras), seeded by its own name: what it draws does not
    depend on which tests ran before it in its process, so a test that
    passes alone passes in the suite, and one that fails does so every
    time (a random draw that breaks a test is found once, not as a flake)."""
    import zlib

    keras.utils.set_random_seed(zlib.crc32(request.node.nodeid.encode()) % 2**31)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_data():
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"shared data not found at {path}")
    return path
