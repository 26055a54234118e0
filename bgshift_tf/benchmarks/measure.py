"""Timing and FLOP-rate helpers shared by the training benchmarks (`gan.py`, `reid.py`): best-of-N wall time,
FLOPs of a traced graph (TF's profiler), and this machine's measured float32/bfloat16 matmul and conv peaks
(measured once per process, then reused)."""

import functools
import time

import tensorflow as tf

from tensorflow.python.profiler import model_analyzer, option_builder

BF16_PEAKS = ("matmul_bfloat16", "conv_bfloat16")


def seconds_per_call(fn, iterations, warmup=1):
    """Fastest wall time of `fn()` over `iterations` calls after `warmup` untimed calls (tracing, caches).

    The minimum, not the mean: other jobs share this machine, and the fastest call is the one least
    disturbed by them (timeit's rule).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def graph_flops(concrete_function):
    """FLOPs of one call of a traced tf.function, as TF's profiler counts them (convs, their gradients,
    transposed convs, matmuls and elementwise ops with registered statistics)."""
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(concrete_function.graph, options=options).total_float_ops


@functools.lru_cache(maxsize=None)
def peaks(quick=False, repeats=3):
    """Measured FLOP/s peaks of this machine: {"matmul_<dtype>", "conv_<dtype>"} for float32 and bfloat16.

    matmul: [n, n] x [n, n], n = 4096 (512 when quick). conv: 3x3, 256 -> 256 channels at 64x32, batch 16
    (the generator trunk's shape at the paper size; 32 channels at 16x8 when quick). Best of `repeats`.
    """
    n, channels, height, width = (512, 32, 16, 8) if quick else (4096, 256, 64, 32)
    results = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal([n, n]), dtype)
        images = tf.cast(tf.random.normal([16, height, width, channels]), dtype)
        kernel = tf.cast(tf.random.normal([3, 3, channels, channels]), dtype)
        ops = {"matmul": (tf.function(lambda: tf.reduce_sum(tf.matmul(a, a))), 2.0 * n**3),
               "conv": (tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME"))),
                        2.0 * 16 * height * width * 9 * channels * channels)}
        for name, (fn, flops) in ops.items():
            results[f"{name}_{dtype}"] = flops / seconds_per_call(lambda: float(fn()), repeats)
    return results


def fraction_of_peaks(achieved, measured_peaks):
    """{peak: {key: achieved FLOP/s / peak FLOP/s}} for the bf16 matmul and conv peaks."""
    return {peak: {k: round(v / measured_peaks[peak], 3) for k, v in achieved.items()} for peak in BF16_PEAKS}


def rounded(rates):
    return {k: round(v, 2) for k, v in rates.items()}


def best_of(columns):
    """Per step, the fastest of several {mode: {step: images/s}} columns: ({step: rate}, {step: mode})."""
    best, modes = {}, {}
    for mode, rates in columns.items():
        for step, rate in rates.items():
            if rate > best.get(step, 0.0):
                best[step], modes[step] = rate, mode
    return best, modes
