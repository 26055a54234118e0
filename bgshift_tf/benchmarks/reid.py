"""Re-ID train-step throughput (images/second) in TF float32 and mixed_bfloat16: IDE and DA-2S, small DenseNet
at the demo size, and the paper's DenseNet-121 IDE and DA-2S at 256x128 batch 8 (quick=False only; minutes
on 2 CPU cores, mostly tracing). "bf16_vs_float32" is the ratio of the two precisions per model.

A DA-2S "image" is one pair (both streams). Random inputs; the timed steps follow one untimed
warm-up step (tf.function tracing). quick=True is a smoke run: 64x32, batch 4, eager steps (tracing the
DenseNets would cost more than the run), so its numbers are not measurements. No PyTorch twin of the
re-ID networks yet (the SBSGAN benchmark has one).
"""

import time

import numpy as np
import tensorflow as tf

from bgshift_tf.models.reid import DA2S, IDE
from bgshift_tf.training.precision import policy_scope
from bgshift_tf.training.reid import make_optimizer, make_train_step

PRECISIONS = ("float32", "mixed_bfloat16")


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
    """Returns {"<model>_<backbone>_<H>x<W>": {precision: {images_per_second, ...}, "bf16_vs_float32"}}."""
    image_size, batch_size, steps = ((64, 32), 4, 1) if quick else ((128, 64), 32, 10)
    cases = [(name, cls, "densenet_small", image_size, batch_size, steps, 100)
             for name, cls in (("ide", IDE), ("da2s", DA2S))]
    if not quick:
        cases += [(name, cls, "densenet121", (256, 128), 8, 5, 751) for name, cls in (("ide", IDE), ("da2s", DA2S))]
    results = {}
    for name, cls, backbone, size, batch, count, classes in cases:
        key = f"{name}_{backbone}_{size[0]}x{size[1]}"
        results[key] = {}
        for policy in PRECISIONS:
            print(f"[bench reid] {key} {policy} ...", flush=True)
            with policy_scope(policy):
                model = cls(classes, backbone=backbone, input_shape=(*size, 3))
                results[key][policy] = _step_throughput(model, size, batch, count, classes, compiled=not quick)
        results[key]["bf16_vs_float32"] = round(
            results[key]["mixed_bfloat16"]["images_per_second"] / results[key]["float32"]["images_per_second"], 2)
    return results
