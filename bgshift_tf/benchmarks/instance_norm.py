"""Instance norm: ours (`models.layers.InstanceNormalization`, analytic gradient in training) against what it
replaced (Keras `GroupNormalization(groups=-1)`, autodiff), float32, tf.function graphs.

`run(quick=False) -> dict` measures, at gan_demo.flags' size ("demo64" of `benchmarks.gan` with nearest
upsampling: 64x32, batch 16, G 32 / 2 residual blocks, D 16 / 5 layers), in alternating rounds so that
both see the same machine load, the fastest call of:
- `norm_only`: forward + backward of every instance norm of that generator alone (its norms' input shapes,
  the loss sum(y * dy) with fixed dy), milliseconds per pass over all of them;
- `dg_step`: the whole `discriminator_generator_step` (what training runs at n_critic = 1), images/s;
- `separate_keras`: `discriminator_step` then `generator_step` with Keras' norm, as two graph calls: the
  step training ran when issue 26 was filed ("today's graph step" of its 1.3x target).
Each reports `ratio` = ours over Keras' speed (`dg_step` also `ratio_vs_separate_keras`, ours over the
issue's baseline), and `dg_step` the largest difference of the two models' losses on the same batch and
weights (they must agree: same maths). `quick=True`: tiny sizes, one round.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from bgshift_tf.benchmarks.gan import QUICK_SETTING, SETTINGS, _batch, _tf_model
from bgshift_tf.benchmarks.measure import seconds_per_call
from bgshift_tf.models import layers

VARIANTS = ("keras_group_norm", "ours")


@contextlib.contextmanager
def _norms(variant):
    """Models built inside use `variant`'s instance norm."""
    original = layers.instance_norm
    if variant == "keras_group_norm":
        layers.instance_norm = lambda name: keras.layers.GroupNormalization(
            groups=-1, epsilon=layers.INSTANCE_NORM_EPSILON, name=name)
    try:
        yield
    finally:
        layers.instance_norm = original


def _norm_layers(model):
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, (layers.InstanceNormalization, keras.layers.GroupNormalization)):
            found.append(layer)
        found += _norm_layers(layer) if isinstance(layer, keras.Model) else []
    return found


def _norm_pass(norms, batch_size, seed=0):
    """A tf.function: forward + backward (training=True) of `norms` on fixed inputs of their shapes."""
    rng = np.random.default_rng(seed)
    shapes = [(batch_size, *norm.input.shape[1:]) for norm in norms]
    xs = [tf.constant(rng.normal(size=s), tf.float32) for s in shapes]
    dys = [tf.constant(rng.normal(size=s), tf.float32) for s in shapes]

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(xs)
            loss = tf.add_n([tf.reduce_sum(norm(x, training=True) * dy) for norm, x, dy in zip(norms, xs, dys)])
        return tape.gradient(loss, xs + [w for norm in norms for w in norm.trainable_weights])

    return run


def run(quick=False):
    setting = dict(QUICK_SETTING if quick else {**SETTINGS["demo64"], "upsample": "nearest"})
    rounds = 1 if quick else 5
    batch, slots = _batch(setting)
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    steps, passes, losses = {}, {}, {}
    for variant in VARIANTS:
        with _norms(variant):
            model = _tf_model(setting, slots, "float32")
        steps[variant] = tf.function(model.discriminator_generator_step)
        norms = _norm_layers(model.generator)
        passes[variant] = _norm_pass(norms, setting["batch_size"])
        losses[variant] = {k: float(v) for k, v in steps[variant](tensors).items()}  # first call: traces
        if variant == "keras_group_norm":  # after the loss comparison: these calls update the weights
            d_step, g_step = tf.function(model.discriminator_step), tf.function(model.generator_step)
            separate = lambda: (d_step(tensors)["d_loss"].numpy(), g_step(tensors)["g_loss"].numpy())  # noqa: E731
            separate()  # traces both
    times = {"norm_only": {v: [] for v in VARIANTS}, "dg_step": {v: [] for v in VARIANTS}, "separate_keras": []}
    for _ in range(rounds):
        times["separate_keras"].append(seconds_per_call(separate, setting["steps"]))
        for variant in VARIANTS:
            times["norm_only"][variant].append(seconds_per_call(lambda: passes[variant]()[0].numpy(),
                                                                setting["steps"]))
            times["dg_step"][variant].append(seconds_per_call(lambda: steps[variant](tensors)["g_loss"].numpy(),
                                                              setting["steps"]))
    norm_ms = {v: 1000 * min(times["norm_only"][v]) for v in VARIANTS}
    dg_rate = {v: setting["batch_size"] / min(times["dg_step"][v]) for v in VARIANTS}
    separate_rate = setting["batch_size"] / min(times["separate_keras"])
    return {
        "setting": {k: setting[k] for k in ("image_size", "batch_size", "base_filters", "num_res_blocks")},
        "rounds": rounds,
        "norm_only": {"ms": norm_ms, "ratio": norm_ms["keras_group_norm"] / norm_ms["ours"],
                      "num_norms": len(norms)},
        "separate_keras": {"images_per_s": separate_rate},
        "dg_step": {"images_per_s": dg_rate, "ratio": dg_rate["ours"] / dg_rate["keras_group_norm"],
                    "ratio_vs_separate_keras": dg_rate["ours"] / separate_rate,
                    "first_step_max_loss_diff": max(abs(losses["ours"][k] - losses["keras_group_norm"][k])
                                                    for k in losses["ours"])},
    }
