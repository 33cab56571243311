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


def side_by_side(functions, repeats):
    """Median milliseconds of each of `functions`, called in turns after a
    warm-up: each suffers the machine's load alike."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, spent in zip(functions, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [1000 * float(np.median(t)) for t in times]


def machine():
    """`"<processor>, <n> cores, TensorFlow <version>"`."""
    import tensorflow as tf

    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, TensorFlow {tf.__version__}"


def report(lines, filename, quick):
    """Prints the Markdown `lines`; a full run (not `--quick`) also writes
    them to `benchmarks/<filename>`, which the README quotes."""
    text = "\n".join(lines)
    print(text)
    if not quick:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), filename), "w") as f:
            f.write(text + "\n")
