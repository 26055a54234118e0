"""SBSGAN training run: data, models and the generic loop put together (the library behind `train_gan`).

- `train_sbsgan(config) -> dict` trains on K TFRecord folders (one per domain, `domain_dirs`; the
  domain index is the folder's position) and returns the loop's run summary plus dataset facts.
  Keys and defaults: `DEFAULT_CONFIG` (paper settings: 256x128, batch 16, 5 epochs, lr 1e-4, betas
  (0.5, 0.999), n_critic 5, paper widths, and the paper loss weights from `losses.LossWeights`).
- `settings_not_from_paper(gan_config) -> list[str]`: the paper settings a config changes, for reports.
- Each loop iteration draws one global batch: D updates every iteration, G every `n_critic`-th
  (`training.loop.ScheduledStep`), both from `training.gan.SBSGAN`; an iteration with a G update runs
  `discriminator_generator_step` (the fakes made once). `steps_per_call` iterations run per graph call.
- Recipe options beyond the paper (each listed by `settings_not_from_paper` when used): `upsample`
  (resize + conv decoders), `skips` (U-Net skip connections), `attention` (attention-mask outputs),
  `g_ema_decay` (G weight average, used by `load_generator`), `lr_decay_start` (StarGAN's linear decay to 0
  over the last part of training, `LinearDecayAfter`).
- Run directory: `config.json` = {"flags": config, "generator": Generator config, "discriminator":
  Discriminator config, "sbsgan": loss weights etc., "domains", dataset facts}; `checkpoints/` with
  `generator`, `discriminator`, `g_optimizer`, `d_optimizer`, `step` (`training.gan_checkpoint.load_generator`
  reads it); `logs/` with `losses/<term>`, `learning_rate/<optimizer>` and image grids `images/input`,
  `images/mask`, `images/soft_mask`, `images/to_<domain>` per domain, `images/reconstruction`
  (soft-mask image back to its source domain), on a fixed preview batch (the first images of each domain).
- Resume: `check_resumable` compares the run's config.json with this run's models before anything is
  written (another architecture would fail to restore after config.json was overwritten); the data pipeline is reseeded from the resumed step (`seed + 1_000_003 * start_step`), not
  replayed; weights, optimizer state and the step count come from the checkpoint.
"""

import dataclasses
import json
import os

import keras
import tensorflow as tf

from bgshift_tf.core import atomic_io, config_flags, errors, precision
from bgshift_tf.data import input as data_input
from bgshift_tf.data import shards
from bgshift_tf.models.discriminator import Discriminator
from bgshift_tf.models.generator import Generator
from bgshift_tf.training import loop
from bgshift_tf.training.gan import SBSGAN, add_gan_targets
from bgshift_tf.training.gan_checkpoint import checkpoint_trackables
from bgshift_tf.training.losses import LossWeights
from bgshift_tf.training.strategy import make_strategy

DEFAULT_CONFIG = {
    "domain_dirs": [],  # TFRecord folders, one per domain, in domain-index order
    "split": "train",
    "image_height": 256,
    "image_width": 128,
    "batch_size": 16,  # global batch
    "epochs": 5,
    "max_steps": 0,  # > 0 overrides epochs (loop iterations = D updates)
    "learning_rate": 1e-4,
    "beta1": 0.5,
    "beta2": 0.999,
    **dataclasses.asdict(LossWeights()),  # lambda_adv, lambda_cls, ...: the paper's weights
    "n_critic": 5,
    "num_soft_mask": 0,  # 0 = K + 1
    "base_filters": 64,
    "num_res_blocks": 6,
    "d_base_filters": 64,
    "d_num_layers": 6,
    "upsample": "transposed",  # decoder upsampling (models.layers.UPSAMPLE_MODES); the paper's deconv
    "skips": False,  # U-Net skip connections encoder -> decoders (not the paper's)
    "attention": "none",  # decoders with an attention-mask output (models.generator.ATTENTION_MODES; not the paper's)
    "keep_bias": 0.0,  # initial bias of the attention keep-mask logits (0 = Keras' zeros)
    "g_ema_decay": 0.0,  # > 0: keep a moving average of G's weights for generation (not the paper's)
    "lr_decay_start": 1.0,  # fraction of training after which both rates decay linearly to 0 (1 = constant)
    "steps_per_call": 1,  # loop iterations per tf.function call (training.loop)
    "shuffle_buffer": 2048,
    "precision": "float32",  # auto | float32 | mixed_bfloat16 | mixed_float16 (core.precision)
    "strategy": "default",
    "cpu_replicas": 0,
    "intra_op_threads": 0,  # TF thread pools (0 = TF's default; training.strategy.configure_threads)
    "inter_op_threads": 0,
    "run_dir": "runs/sbsgan",
    "checkpoint_every": 1000,
    "keep_checkpoints": 3,
    "summary_every": 50,
    "image_every": 500,
    "num_preview": 2,  # preview images per domain in the TensorBoard grids
    "seed": 0,
    "verbose": 1,
}


# The paper settings (this DEFAULT_CONFIG) that a run's report compares against: schedule, loss weights,
# architecture. `max_steps` > 0 counts as a change of `epochs`.
PAPER_KEYS = ("image_height", "image_width", "batch_size", "epochs", "learning_rate", "n_critic",
              *LossWeights.names(), "num_soft_mask", "base_filters", "num_res_blocks", "d_base_filters",
              "d_num_layers", "upsample", "skips", "attention", "keep_bias", "g_ema_decay", "lr_decay_start")


def _show(value):
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def settings_not_from_paper(gan_config):
    """["lambda_bgs 50 [5]", "max_steps 10 [epochs 5]", ...]: the paper settings a trainer config changes.

    Args:
        gan_config: a (partial) SBSGAN trainer config; keys it lacks count as the paper's.

    Returns:
        "<key> <value> [<paper value>]" for each of `PAPER_KEYS` that differs, in that order, then
        "max_steps N [epochs E]" if `max_steps` > 0.
    """
    changed = [f"{key} {_show(gan_config[key])} [{_show(DEFAULT_CONFIG[key])}]" for key in PAPER_KEYS
               if key in gan_config and gan_config[key] != DEFAULT_CONFIG[key]]
    if gan_config.get("max_steps", 0) > 0:
        changed.append(f"max_steps {gan_config['max_steps']} [epochs {DEFAULT_CONFIG['epochs']}]")
    return changed


def merge_config(config):
    """DEFAULT_CONFIG updated with `config`, checked (errors name the key and echo the value)."""
    merged = config_flags.merge_known(DEFAULT_CONFIG, config, "train_sbsgan: unknown config keys")
    merged["domain_dirs"] = [str(d) for d in merged["domain_dirs"]]
    if len(merged["domain_dirs"]) < 2:
        raise ValueError(f"`domain_dirs` needs one TFRecord folder per domain, at least 2. "
                         f"Received: domain_dirs={merged['domain_dirs']}")
    for key in ("batch_size", "n_critic", "num_preview", "steps_per_call"):
        if merged[key] < 1:
            raise ValueError(f"`{key}` must be >= 1. Received: {key}={merged[key]}")
    if not 0.0 <= merged["g_ema_decay"] < 1.0:
        raise ValueError(f"`g_ema_decay` must be in [0, 1). Received: g_ema_decay={merged['g_ema_decay']}")
    if not 0.0 < merged["lr_decay_start"] <= 1.0:
        raise ValueError(f"`lr_decay_start` must be in (0, 1]. Received: lr_decay_start={merged['lr_decay_start']}")
    if merged["max_steps"] <= 0 and merged["epochs"] <= 0:
        raise ValueError(f"Set `epochs` or `max_steps` > 0. Received: epochs={merged['epochs']}, "
                         f"max_steps={merged['max_steps']}")
    return merged


def _domain_facts(config):
    """Domain names (each folder's manifest `dataset`) and the number of `split` examples in all."""
    names, count = [], 0
    for folder in config["domain_dirs"]:
        manifest = shards.read_manifest(folder)
        if config["split"] not in manifest["splits"]:
            raise ValueError(f"TFRecord folder {folder!r} has no split {config['split']!r}; it has "
                             f"{sorted(manifest['splits'])}")
        names.append(str(manifest.get("dataset", f"domain{len(names)}")))
        count += int(manifest["splits"][config["split"]]["num_examples"])
    return names, count


def make_dataset_fn(config, num_domains, num_soft_mask):
    """`make_dataset(start_step)` for the loop: global batches of image, mask, domain + GAN targets."""
    image_size = (config["image_height"], config["image_width"])

    def make_dataset(start_step):
        seed = config["seed"] + 1_000_003 * start_step
        batches = data_input.make_multi_domain_dataset(
            config["domain_dirs"], split=config["split"], image_size=image_size,
            batch_size=config["batch_size"], shuffle_buffer=config["shuffle_buffer"], seed=seed,
            require_mask=True, verify=True)
        batches = batches.map(lambda b: {k: b[k] for k in ("image", "mask", "domain")})
        return add_gan_targets(batches, num_domains, num_soft_mask, seed=seed).prefetch(2)

    return make_dataset


def _preview_batch(config):
    """A fixed preview batch: the first `num_preview` images of each domain, in stored order.

    Returns (images float32 [N,H,W,3], masks float32 [N,H,W,1], domains int64 [N]), N = K * num_preview.
    """
    image_size = (config["image_height"], config["image_width"])
    images, masks, domains = [], [], []
    for position, folder in enumerate(config["domain_dirs"]):
        batches = data_input.make_eval_dataset(shards.shard_files(folder, config["split"]), image_size=image_size,
                                               batch_size=config["num_preview"], verify=False)
        batch = next(iter(batches))
        images.append(batch["image"])
        masks.append(batch["mask"])
        domains.append(tf.fill(tf.shape(batch["domain"]), tf.constant(position, tf.int64)))
    return tf.concat(images, 0), tf.concat(masks, 0), tf.concat(domains, 0)


def _side_by_side(images):
    """[N,H,W,C] -> one grid [H, N*W, C]."""
    return tf.concat(tf.unstack(images), axis=1)


def make_image_fn(generator, images, masks, domains, domain_names):
    """Returns `image_fn() -> {name: grid [H, N*W, 3] in [-1,1]}` for the loop's TensorBoard hook."""

    def image_fn():
        soft = generator.soft_mask(images)
        grids = {"images/input": images, "images/mask": tf.repeat(masks * 2.0 - 1.0, 3, axis=-1),
                 "images/soft_mask": soft}
        for k, name in enumerate(domain_names):
            grids[f"images/to_{name}"] = generator.style_transfer(images, tf.fill(tf.shape(domains), k))
        grids["images/reconstruction"] = generator.style_transfer(soft, domains)
        return {name: _side_by_side(value) for name, value in grids.items()}

    return image_fn


@keras.saving.register_keras_serializable(package="bgshift_tf")
class LinearDecayAfter(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate` for the first `decay_start` updates, then linearly down to 0 at `total_updates`
    (StarGAN's schedule: decay over the second half)."""

    def __init__(self, learning_rate, decay_start, total_updates):
        if not 0 <= decay_start <= total_updates:
            raise ValueError(f"LinearDecayAfter needs 0 <= decay_start <= total_updates. Received: "
                             f"decay_start={decay_start}, total_updates={total_updates}")
        self.learning_rate, self.decay_start = float(learning_rate), int(decay_start)
        self.total_updates = int(total_updates)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        left = (self.total_updates - step) / max(self.total_updates - self.decay_start, 1)
        return self.learning_rate * tf.where(step < self.decay_start, 1.0, tf.clip_by_value(left, 0.0, 1.0))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_start": self.decay_start,
                "total_updates": self.total_updates}


def _learning_rate(config, updates):
    """The configured rate, or its `LinearDecayAfter` over an optimizer's `updates` updates."""
    if config["lr_decay_start"] >= 1.0:
        return config["learning_rate"]
    return LinearDecayAfter(config["learning_rate"], int(config["lr_decay_start"] * updates), updates)


def build_sbsgan(config, num_domains, total_steps=1):
    """SBSGAN with its two Adam optimizers, built in the current (strategy) scope under `config["precision"]`
    (G and D keep that dtype policy; Adam is loss-scaled under mixed_float16). `total_steps`: the loop
    iterations, which the learning-rate decay is laid over (D updates each iteration, G every n_critic-th)."""
    image_size = (config["image_height"], config["image_width"])
    with precision.policy_scope(config["precision"]) as policy:
        def generator():
            return Generator(num_domains=num_domains, image_size=image_size, base_filters=config["base_filters"],
                             num_res_blocks=config["num_res_blocks"], upsample=config["upsample"],
                             skips=config["skips"], attention=config["attention"], keep_bias=config["keep_bias"])

        main_generator = generator()
        average = generator() if config["g_ema_decay"] > 0 else None
        discriminator = Discriminator(num_domains=num_domains, image_size=image_size,
                                      base_filters=config["d_base_filters"], num_layers=config["d_num_layers"])
    gan = SBSGAN(main_generator, discriminator, global_batch_size=config["batch_size"],
                 num_soft_mask=config["num_soft_mask"] or None, n_critic=config["n_critic"],
                 loss_weights=LossWeights.from_config(config, source="SBSGAN trainer config"),
                 generator_ema=average, g_ema_decay=config["g_ema_decay"])

    def adam(name, updates):
        return precision.wrap_optimizer(keras.optimizers.Adam(
            _learning_rate(config, updates), beta_1=config["beta1"], beta_2=config["beta2"], name=name), policy)

    gan.compile(g_optimizer=adam("g_adam", max(1, total_steps // config["n_critic"])),
                d_optimizer=adam("d_adam", total_steps))
    return gan


def gan_steps(gan):
    """The loop schedule: a D update every iteration; every `gan.n_critic`-th iteration runs D then G in one
    step (`discriminator_generator_step`), so G updates after each n_critic D updates."""
    if gan.n_critic == 1:
        return [loop.ScheduledStep("dg", gan.discriminator_generator_step)]
    return [loop.ScheduledStep("d", gan.discriminator_step, skip_every=gan.n_critic),
            loop.ScheduledStep("dg", gan.discriminator_generator_step, every_n=gan.n_critic)]


# The config.json entries a checkpoint's variables depend on: another value cannot restore it.
RESUME_KEYS = ("domains", "generator", "discriminator", "generator_ema")


def _flat_items(value, prefix):
    """{"a": {"b": 1}} -> {"a.b": 1}: nested config entries as dotted keys (lists stay values)."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in _flat_items(item, f"{prefix}.{key}").items()}


def check_resumable(run_dir, run_config):
    """Raises errors.ArgumentError if `run_dir` holds an SBSGAN run whose checkpoints this run cannot restore.

    Compares the `RESUME_KEYS` of `<run_dir>/config.json` (if present) with `run_config`; the message names
    the folder and each differing key as "key old -> new". Nothing is written, so a refused resume keeps
    the run's config.json.
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        try:
            previous = json.load(f)
        except json.JSONDecodeError as error:
            raise errors.DataError(f"{path} is not valid JSON ({error}); delete the run folder to start fresh")
    before = {k: v for key in RESUME_KEYS for k, v in _flat_items(previous.get(key), key).items()}
    now_config = json.loads(json.dumps(run_config, default=atomic_io.json_default))
    now = {k: v for key in RESUME_KEYS for k, v in _flat_items(now_config[key], key).items()}
    changed = [f"{key} {before.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(before) | set(now))
               if before.get(key) != now.get(key)]
    if changed:
        raise errors.ArgumentError(
            f"--run_dir={run_dir!r} holds an SBSGAN run these settings cannot resume: {'; '.join(changed)}. "
            f"Use the run's own settings, another --run_dir, or delete that one to start fresh.")


def train_sbsgan(config):
    """Trains SBSGAN as configured (keys of `DEFAULT_CONFIG`); resumes from `run_dir` if it has checkpoints.

    Returns:
        The loop's run summary plus domains, num_train_examples, steps_per_epoch, total_steps.
    """
    # 1. The strategy first: splitting the CPU into logical devices must precede other TF work.
    config = merge_config(config)
    strategy = make_strategy(config["strategy"], config["cpu_replicas"], config["intra_op_threads"],
                             config["inter_op_threads"])
    # 2. Dataset facts and the schedule length.
    domain_names, num_examples = _domain_facts(config)
    num_domains = len(domain_names)
    steps_per_epoch = max(1, num_examples // config["batch_size"])
    total_steps = config["max_steps"] if config["max_steps"] > 0 else config["epochs"] * steps_per_epoch
    # 3. Models and optimizers under the strategy's scope.
    with strategy.scope():
        gan = build_sbsgan(config, num_domains, total_steps)
    # 4. config.json content (what load_generator and the report read), checked against a run to resume
    #    before the loop (re)writes it, and the preview hook.
    gan_config = {k: v for k, v in gan.get_config().items() if k not in ("generator", "discriminator")}
    facts = {"domains": domain_names, "num_train_examples": num_examples, "steps_per_epoch": steps_per_epoch,
             "total_steps": total_steps}
    run_config = {"flags": config, "precision": gan.generator.dtype_policy.name,
                  "generator": gan.generator.get_config(), "generator_ema": gan.generator_ema is not None,
                  "discriminator": gan.discriminator.get_config(), "sbsgan": gan_config, **facts}
    check_resumable(config["run_dir"], run_config)
    image_fn = None
    if config["image_every"] > 0:
        shown = gan.generator if gan.generator_ema is None else gan.generator_ema
        image_fn = make_image_fn(shown, *_preview_batch(config), domain_names)
    # 5. The loop: D every iteration, G every n_critic-th.
    summary = loop.train_loop(
        strategy=strategy,
        make_dataset=make_dataset_fn(config, num_domains, gan.num_soft_mask),
        steps=gan_steps(gan),
        total_steps=total_steps, run_dir=config["run_dir"], trackables=checkpoint_trackables(gan),
        config=run_config, checkpoint_every=config["checkpoint_every"],
        keep_checkpoints=config["keep_checkpoints"], summary_every=config["summary_every"],
        image_every=config["image_every"], image_fn=image_fn, verbose=config["verbose"],
        steps_per_call=config["steps_per_call"])
    return {**summary, **facts}
