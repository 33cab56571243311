"""Where and how a recipe trains: the `tf.distribute` strategy, the
precision, the seed and determinism.

`training_context(strategy, mixed_precision, seed, deterministic)` is what
every training command (`segattn train`, `instance-train`, `caption-train`,
`stn-table`) runs its model building, compiling and fitting in:

- `strategy`: `"auto"` (a TPU if one is attached, several workers if
  `$TF_CONFIG` describes a cluster, every GPU if there are several, else the
  default strategy), `"default"`, `"mirrored"` (all local GPUs, or the CPU),
  `"multi-worker"` (`MultiWorkerMirroredStrategy`, the cluster of
  `$TF_CONFIG`) or `"tpu"`. Batch sizes are global: each of `n` replicas
  gets `batch_size / n` examples a step.
- `mixed_precision`: `None`, `"float16"` (GPUs; Keras scales the loss) or
  `"bfloat16"` (TPUs, recent GPUs and CPUs): computations in the low
  precision, variables and outputs in float32.
- `seed`: seeds Python, NumPy, TensorFlow and Keras (`keras.utils.
  set_random_seed`): the weights, dropout, and every random op without a
  seed of its own.
- `deterministic`: TensorFlow's deterministic kernels
  (`tf.config.experimental.enable_op_determinism`) for the block, so that
  two runs of the same command, or a run killed and resumed, produce the
  same weights bit for bit (`docs/training.md`, "Deterministic training"). An
  op with no deterministic kernel on the device (several GPU gradients)
  stops training with an error that names it and the flag.

Under several workers, only the chief writes the run folder
(`is_chief`); every worker reads its resume state, so a killed run resumes
on all of them from the chief's last committed epoch: the run folder must be
on a file system every worker reads (NFS, a mounted bucket).

Keras 3's TensorFlow trainer (3.15 here) cannot `fit` under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585): it averages the
first batch across workers to learn its shapes, and reduces each step's
scalar logs along an axis they do not have, and both fail. Inside
`training_context` with several workers, `_multi_worker_fixes` mends the two
places, and puts them back on leaving; `tests/recipes/test_multi_worker.py`
fails when Keras changes either.
"""

import contextlib
import json
import os
import re

import tensorflow as tf

from keras_segattn.core.precision import dtype_policy

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
MIXED_PRECISIONS = ("float16", "bfloat16")


def cluster_from_environment():
    """The `(cluster, task)` dicts of `$TF_CONFIG`, or `({}, {})` if unset.

    Raises:
        ValueError: if `$TF_CONFIG` is not JSON with a `cluster` dict.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return {}, {}
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise TypeError
        if not all(isinstance(hosts, list) for hosts in cluster.values()):
            raise TypeError
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}; got {text!r}.'
        ) from error
    return cluster, task


def _tpu_attached():
    # Creating a TPU resolver on a machine without one can block on the
    # cloud metadata server: look for Colab's and Cloud TPU's markers first.
    return bool(os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME")) or bool(
        tf.config.list_logical_devices("TPU")
    )


def make_strategy(strategy="auto"):
    """Returns the `tf.distribute.Strategy` named by `strategy` (see the
    module docstring).

    Multi-worker and TPU strategies must be made before TensorFlow runs
    anything else in the process: call this first.

    Raises:
        ValueError: an unknown name, `"multi-worker"` without a `$TF_CONFIG`
            cluster, `"tpu"` without a TPU.
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got strategy={strategy!r}.")
    cluster, _ = cluster_from_environment()
    workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    if strategy == "auto":
        # The cluster first: listing devices starts TensorFlow's runtime, after
        # which a multi-worker strategy can no longer be made.
        if workers > 1:
            strategy = "multi-worker"
        elif _tpu_attached():
            strategy = "tpu"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi-worker":
        if not workers:
            raise ValueError(
                "strategy='multi-worker' needs $TF_CONFIG to describe the cluster, e.g. "
                'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' on the first machine.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not _tpu_attached():
        raise ValueError("strategy='tpu' needs a TPU (none is attached to this machine).")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy):
    """What `run.json` records of a `strategy` argument: the name, or a
    strategy object's class name."""
    return strategy if isinstance(strategy, str) else type(strategy).__name__


def is_chief(strategy):
    """Whether this process writes the run's files: always, except on the
    workers of a multi-worker cluster other than the chief (the `"chief"`
    task, or worker 0 when the cluster has none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def mixed_precision_policy(mixed_precision):
    """A context that sets the global Keras policy to
    `mixed_<mixed_precision>`, or leaves it as it is for `None`.

    Raises:
        ValueError: for another value than `None`, `"float16"`, `"bfloat16"`.
    """
    if mixed_precision is None:
        return contextlib.nullcontext()
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(
            f"mixed_precision must be None or one of {MIXED_PRECISIONS}; got "
            f"mixed_precision={mixed_precision!r}."
        )
    return dtype_policy(f"mixed_{mixed_precision}")


def _local(strategy, value):
    """This worker's first replica's part of a distributed value."""
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


@contextlib.contextmanager
def _multi_worker_fixes(strategy):
    """Mends Keras' `fit` under several workers (see the module docstring)."""
    from keras.src.backend.tensorflow import trainer as keras_trainer

    trainer_class = keras_trainer.TensorFlowTrainer
    original_build = trainer_class._maybe_symbolic_build
    original_reduce = keras_trainer.reduce_per_replica

    def symbolic_build(model, iterator=None, data_batch=None):
        if model._distribute_strategy is None:
            return  # as Keras: built when the train function is traced
        # Shapes and dtypes are all that is read: the local batch has them.
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(lambda v: _local(strategy, v), next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, distribution, reduction):
        # A step's logs as this worker's replica reads them (what the progress
        # bar shows). The epoch's logs, which choose best.keras, are read
        # from the metrics' variables after the epoch, summed across workers,
        # so every worker takes the same decisions.
        if reduction in ("auto", "mean"):
            return tf.nest.map_structure(lambda v: _local(distribution, v), values)
        return original_reduce(values, distribution, reduction)

    trainer_class._maybe_symbolic_build = symbolic_build
    keras_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer_class._maybe_symbolic_build = original_build
        keras_trainer.reduce_per_replica = original_reduce


@contextlib.contextmanager
def training_context(strategy="auto", mixed_precision=None, seed=None, deterministic=False):
    """Sets the precision, builds the strategy and enters its scope, seeds
    everything and, if asked, turns on deterministic kernels: build, compile
    and fit the model inside.

    Args:
        strategy: str or `tf.distribute.Strategy` (`make_strategy`).
        mixed_precision: `None`, `"float16"` or `"bfloat16"`.
        seed: int or `None`. Seeds Python, NumPy, TensorFlow and Keras
            once the strategy is made; `None` leaves them as they are.
        deterministic: bool. TensorFlow's deterministic kernels inside the
            block (`deterministic_ops`).

    Yields:
        The `tf.distribute.Strategy`.
    """
    with mixed_precision_policy(mixed_precision):
        strategy = make_strategy(strategy)
        several_workers = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            strategy.extended._in_multi_worker_mode()
        )
        fixes = _multi_worker_fixes(strategy) if several_workers else contextlib.nullcontext()
        determinism = deterministic_ops() if deterministic else contextlib.nullcontext()
        with fixes, strategy.scope(), determinism:
            if seed is not None:
                import keras

                keras.utils.set_random_seed(seed)
            yield strategy


@contextlib.contextmanager
def deterministic_ops():
    """TensorFlow's deterministic kernels inside the block
    (`tf.config.experimental.enable_op_determinism`), put back as they were
    on leaving. An op that has no deterministic kernel on its device raises
    inside the block; it is re-raised as a `RuntimeError` naming the op and
    `--deterministic`, from the error TensorFlow gives.
    """
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    except (tf.errors.OpError, RuntimeError) as error:
        text = str(error)
        said = [line.strip() for line in text.splitlines() if "determinis" in line.lower()]
        if not said or text.startswith(DETERMINISM_HINT):
            raise
        node = re.search(r"\{\{node ([^}]+)\}\}", text)  # the graph's name of the op
        where = f" (at {node.group(1)})" if node else ""
        raise RuntimeError(f"{DETERMINISM_HINT}{where}: {said[-1]}") from error
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


DETERMINISM_HINT = (
    "--deterministic (deterministic=True) needs a deterministic kernel for every op the model "
    "runs, and TensorFlow has none for one of them on this device; train without "
    "--deterministic, or on the CPU"
)
