"""Re-ID train-step throughput (images/second): IDE and DA-2S, small DenseNet at the demo size, and the
paper's DenseNet-121 IDE at 256x128 batch 8 (quick=False only; ~1 min on 2 CPU cores, mostly tracing).

A DA-2S "image" is one pair (both streams). Random inputs; the timed steps follow one untimed
warm-up step (tf.function tracing). quick=True is a smoke run: 64x32, batch 4, eager steps (tracing the
DenseNets would cost more than the run), so its numbers are not measurements.
"""

import time

import numpy as np
import tensorflow as tf

from bgshift_tf.models.reid import DA2S, IDE
from bgshift_tf.training.reid import make_optimizer, make_train_step


def _step_throughput(model, image_size, batch_size, steps, num_classes, compiled=True):
    height, width = image_size
    rng = np.random.default_rng(0)
    images = [tf.constant(rng.uniform(-1, 1, (batch_size, height, width, 3)), tf.float32) for _ in range(2)]
    batch = {"image": images[0], "stream1": images[0], "stream2": images[1],
             "label": tf.constant(rng.integers(0, num_classes, batch_size), tf.int64)}
    step = make_train_step(model, make_optimizer(0.01, 0.001, decay_step=1000), batch_size)
    step = tf.function(step) if compiled else step
    start = time.perf_counter()
    float(step(batch)["loss"])
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(batch)["loss"]
    float(loss)
    seconds = (time.perf_counter() - start) / steps
    return {
        "image_size": [height, width], "batch_size": batch_size, "parameters": int(model.count_params()),
        "first_step_seconds": round(first, 2), "step_seconds": round(seconds, 4),
        "images_per_second": round(batch_size / seconds, 1), "compiled": compiled,
    }


def run(quick: bool = False) -> dict:
    """Returns {"<model>_<backbone>_<H>x<W>": {images_per_second, step_seconds, ...}, ...}."""
    image_size, batch_size, steps = ((64, 32), 4, 1) if quick else ((128, 64), 32, 10)
    results = {}
    for name, cls in (("ide", IDE), ("da2s", DA2S)):
        model = cls(100, backbone="densenet_small", input_shape=(*image_size, 3))
        key = f"{name}_densenet_small_{image_size[0]}x{image_size[1]}"
        results[key] = _step_throughput(model, image_size, batch_size, steps, 100, compiled=not quick)
    if not quick:
        model = IDE(751, backbone="densenet121", input_shape=(256, 128, 3))
        results["ide_densenet121_256x128"] = _step_throughput(model, (256, 128), 8, 5, 751)
    return results
