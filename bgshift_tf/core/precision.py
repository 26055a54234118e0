"""Compute precision: the `precision` setting of every trainer and entry point, and where it is applied.

Settings (`PRECISIONS`): "float32", "mixed_bfloat16", "mixed_float16" (Keras dtype policies: variables stay
float32, layers compute in the low precision) and "auto", which `resolve` maps from the device facts:

  * any GPU visible: all of them with compute capability >= 8.0 (Ampere on) -> mixed_bfloat16; all >= 7.0
    (Volta/Turing tensor cores) -> mixed_float16; else float32. The GPUs do the work, so they decide.
  * CPU only: flag `amx_bf16` or `avx512_bf16` in /proc/cpuinfo -> mixed_bfloat16 (bf16 matmul/conv units;
    measured here 2.9x float32 on 4096^3 matmul, 5.7x on a 3x3 conv), provided the bf16 kernels pass a
    self-check (`cpu_bf16_kernels_sound`: a PatchGAN-shaped conv stack's loss and weight gradients, run
    repeatedly in bf16, stay finite and agree with float32); else float32 (float16 has no fast path on
    CPUs). The check exists because on one Intel Xeon with AMX-BF16 (a VM), oneDNN's AMX kernels returned
    NaN or ~1e35 garbage in most calls of the SBSGAN discriminator's gradients, which capping oneDNN at
    AVX512_CORE_BF16 cured (BUILD_NOTES.md "bf16 on AMX").

The policy is scoped, never left set: `policy_scope(precision)` sets Keras' global dtype policy while models
are built and restores the previous one after, so layers keep the policy they were built with. Models
decide which of their layers stay float32 (norm statistics, logits, the generator's tanh output).
Variables are float32 in every precision, so checkpoints cross precisions unchanged.

mixed_float16 needs loss scaling (float16 gradients underflow): `wrap_optimizer` returns Keras'
LossScaleOptimizer, and step functions call `optimizer.scale_loss(loss)` under their tape (a no-op on
other optimizers), as Keras' own train steps do.
"""

import contextlib
import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf
from absl import flags

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Flags declared by `define_flag` belong to its caller (the entry point's --helpshort lists them).
flags.disclaim_key_flags()

FLAG_HELP = ("Compute precision (variables stay float32): auto | float32 | mixed_bfloat16 | mixed_float16; auto "
             "picks mixed_bfloat16 on bf16 CPUs/GPUs, mixed_float16 on older tensor-core GPUs, else float32.")


def define_flag(default="float32", flag_values=flags.FLAGS):
    """Declares --precision (one of PRECISIONS, help FLAG_HELP) with `default`; returns its FlagHolder. The
    one declaration of the flag every trainer and entry point takes."""
    return flags.DEFINE_enum("precision", default, list(PRECISIONS), FLAG_HELP, flag_values=flag_values)


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    """What `auto` looks at: CPU feature flags and each visible GPU's compute capability (major, minor)."""

    cpu_flags: frozenset = frozenset()
    gpu_compute_capabilities: tuple = ()
    cpu_bf16_sound: bool = True  # the self-check's verdict (checked only where auto would pick CPU bf16)


def cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """The `flags` of the first processor in /proc/cpuinfo (empty where the file does not exist)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def device_facts():
    """The facts of this machine: /proc/cpuinfo flags, TensorFlow's visible GPUs and, where `auto` would pick
    CPU bf16, the bf16 kernels' self-check."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capabilities.append(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))))
    flags = cpu_flags()
    sound = True
    if not capabilities and any(flag in flags for flag in CPU_BF16_FLAGS):
        sound = cpu_bf16_kernels_sound()
    return DeviceFacts(cpu_flags=flags, gpu_compute_capabilities=tuple(capabilities), cpu_bf16_sound=sound)


def results_agree(reference, candidates, rtol=0.1):
    """True if every array of every run in `candidates` is finite and within `rtol` x the largest magnitude
    of its `reference` array (a list of arrays) of it."""
    for run in candidates:
        for got, want in zip(run, reference):
            got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
            if not np.all(np.isfinite(got)) or np.max(np.abs(got - want)) > rtol * (np.max(np.abs(want)) + 1e-6):
                return False
    return True


@functools.lru_cache(maxsize=None)
def cpu_bf16_kernels_sound(calls=12):
    """Runs a small PatchGAN-shaped conv stack (5 stride-2 4x4 convs + LeakyReLU, a 3x3 head) forward and
    backward `calls` times in mixed_bfloat16 and once in float32 with the same weights; True if every bf16
    run's loss and weight gradients agree with float32 (`results_agree`). About a second; once per process."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (16, 64, 32, 3)), tf.float32)

    def stack():
        inputs = keras.Input((64, 32, 3))
        x = inputs
        for i in range(5):
            x = keras.layers.LeakyReLU(0.01)(keras.layers.Conv2D(16 * 2**i, 4, 2, padding="same")(x))
        return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", dtype="float32")(x))

    models = {}
    for policy in ("float32", "mixed_bfloat16"):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            models[policy] = stack()
        finally:
            keras.config.set_dtype_policy(previous)

    def step(model):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.cast(model(images), tf.float32) ** 2)
            return [loss, *tape.gradient(loss, model.trainable_variables)]
        return run

    reference = [v.numpy() for v in step(models["float32"])()]
    bf16 = step(models["mixed_bfloat16"])
    return results_agree(reference, ([v.numpy() for v in bf16()] for _ in range(calls)))


def pick_auto(facts):
    """(policy name, reason) that `auto` picks for `facts` (a DeviceFacts)."""
    gpus = facts.gpu_compute_capabilities
    if gpus:
        lowest = min(tuple(c) for c in gpus)
        described = f"{len(gpus)} GPU(s), lowest compute capability {lowest[0]}.{lowest[1]}"
        if lowest >= (8, 0):
            return "mixed_bfloat16", f"{described} >= 8.0: bf16 tensor cores"
        if lowest >= (7, 0):
            return "mixed_float16", f"{described} >= 7.0 but < 8.0: float16 tensor cores, no bf16"
        return "float32", f"{described} < 7.0: no tensor cores"
    found = [flag for flag in CPU_BF16_FLAGS if flag in facts.cpu_flags]
    if found and not facts.cpu_bf16_sound:
        return "float32", (f"no GPU; CPU has {', '.join(found)} but its bf16 kernels failed the self-check "
                           f"(non-finite or wrong results, see core.precision)")
    if found:
        return "mixed_bfloat16", f"no GPU; CPU has {', '.join(found)}: bf16 matmul/conv units"
    return "float32", f"no GPU; CPU has none of {', '.join(CPU_BF16_FLAGS)}"


def check(precision, flag="precision"):
    """Raises ValueError naming `flag` unless `precision` is one of PRECISIONS; returns it."""
    if precision not in PRECISIONS:
        raise ValueError(f"`{flag}` must be one of {PRECISIONS}. Received: {flag}={precision!r}")
    return precision


def resolve(precision, facts=None):
    """The Keras dtype policy name for a `precision` setting; `auto` is picked from `facts` (default: this
    machine's) and the choice is logged with its reason."""
    if check(precision) != "auto":
        return precision
    picked, reason = pick_auto(device_facts() if facts is None else facts)
    print(f"precision=auto -> {picked} ({reason})", flush=True)
    return picked


@contextlib.contextmanager
def policy_scope(precision, facts=None):
    """Builds models under `precision` (resolved as in `resolve`); yields the policy name.

    Keras' global dtype policy is set for the block and restored after, so only layers created inside
    take it.
    """
    policy = resolve(precision, facts)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def wrap_optimizer(optimizer, policy):
    """Keras' LossScaleOptimizer around `optimizer` for mixed_float16 (dynamic loss scale), else `optimizer`."""
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scale")
    return optimizer
