"""What an SBSGAN run checkpoints, and the generator rebuilt from a run folder (`training.gan.SBSGAN`'s
networks by name).

`checkpoint_trackables(model)` names the objects `training.loop.train_loop` checkpoints; `load_generator`
restores the trained generator (its weight average when the run kept one) for generation, the report and
export.
"""

import json
import os

import tensorflow as tf

from bgshift_tf.core.precision import policy_scope
from bgshift_tf.models.generator import Generator


def checkpoint_trackables(model):
    """What a run checkpoints, by name (the `trackables` of `training.loop.train_loop`):
    {"generator", "discriminator", "g_optimizer", "d_optimizer"}, and "generator_ema" when the model keeps
    a weight average. `load_generator` reads `generator_ema` if present, else `generator`."""
    trackables = {
        "generator": model.generator,
        "discriminator": model.discriminator,
        "g_optimizer": model.g_optimizer,
        "d_optimizer": model.d_optimizer,
    }
    if model.generator_ema is not None:
        trackables["generator_ema"] = model.generator_ema
    return trackables


def load_generator(run_dir, precision="float32", average=True):
    """Rebuild the generator of a training run and restore its latest checkpoint.

    Args:
        run_dir: a run directory with `config.json` (key "generator": Generator.get_config(), or its
            keras serialisation) and `checkpoints/` (tf.train.Checkpoint with attribute `generator`, and
            `generator_ema` when the run kept a weight average).
        precision: the compute precision to rebuild it in (a `core.precision` setting), whatever
            the run trained in (checkpoints hold float32 variables); its output stays float32.
        average: restore the weight average where the run kept one (config.json "sbsgan" g_ema_decay
            > 0); False = the raw trained weights.

    Returns:
        Generator with the trained weights.
    """
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No run config at {config_path!r} (run_dir={run_dir!r}).")
    with open(config_path) as f:
        config = json.load(f)
    if "generator" not in config:
        raise ValueError(f"{config_path!r} has no 'generator' entry. Keys: {sorted(config)}")
    generator_config = config["generator"]
    if "class_name" in generator_config and "config" in generator_config:
        generator_config = generator_config["config"]
    with policy_scope(precision):
        generator = Generator.from_config(generator_config)
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        raise FileNotFoundError(f"No checkpoint in {checkpoint_dir!r} (run_dir={run_dir!r}).")
    name = "generator_ema" if average and config.get("sbsgan", {}).get("g_ema_decay", 0) > 0 else "generator"
    tf.train.Checkpoint(**{name: generator}).restore(latest).expect_partial().assert_existing_objects_matched()
    return generator
