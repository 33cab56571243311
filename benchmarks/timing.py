"""Timing helpers shared by the benchmark scripts."""

import os
import platform
import time

import numpy as np


def median_seconds(fn, repeats):
    """Median wall time of `fn()` over `repeats` calls, after one warm-up call
    (tracing, allocation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine():
    """`"<processor>, <n> cores, TensorFlow <version>"`."""
    import tensorflow as tf

    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, TensorFlow {tf.__version__}"
