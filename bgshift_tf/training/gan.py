"""The SBSGAN training recipe (paper §3, SPEC §2): one keras.Model holding G, D, their optimizers and losses.

Batch contract (one GLOBAL batch, before distribution; see `add_gan_targets`):
    image  float32 [b,H,W,3] in [-1,1]     mask  float32 [b,H,W,1] in {0,1}     domain  int [b]
    target_domain  int [b] (!= domain)     soft_mask_slot  float32 [b] (1 for the first K+1 of each global batch)
    gp_alpha  float32 [b] in [0,1] (optional; drawn per replica if absent)

Soft-mask-slot images make G(I, D̄) (L_bgs, L_sc with their style transfers to all other domains, L_rec
back to the source, L_adv, L_cls^f toward the uniform 1/K); the other images make G(I, D_target) (L_idc,
L_rec, L_adv, L_cls^f toward the one-hot target). D sees the reals (L_adv, L_cls^r with source labels, GP)
and one fake per image. Every term is summed over examples and divided by a GLOBAL constant, so the update
is the same on 1 or N replicas.

`discriminator_step` / `generator_step` each do one update and work per replica inside `strategy.run`
in a `tf.function`; they return this replica's share of each loss (reduce with SUM across replicas).
`train_step` composes them for single-device `fit`.
"""

import json
import os

import keras
import tensorflow as tf

from bgshift_tf.models.generator import Generator, onehot_indicator, uniform_indicator
from bgshift_tf.training import losses
from bgshift_tf.training.precision import policy_scope

D_TERMS = ("d_loss", "d_adv", "d_cls", "d_gp")
G_TERMS = ("g_loss", "g_adv", "g_cls", "g_rec", "g_idc", "g_bgs", "g_sc")


def add_gan_targets(dataset, num_domains, num_soft_mask, seed=0):
    """Add `target_domain`, `soft_mask_slot` and `gp_alpha` to each GLOBAL batch of a dict dataset.

    Computed before distribution so that every replica and every run with the same seed agree.

    Args:
        dataset: tf.data.Dataset of dict batches with `domain` int [b].
        num_domains: K >= 2.
        num_soft_mask: images per global batch that go to soft-mask generation (K + 1 in the paper).
        seed: int; the draws for batch i depend only on (seed, i).

    Returns:
        The dataset with `target_domain` (domain dtype, [b], uniform over the K-1 other domains),
        `soft_mask_slot` (float32 [b], 1 for the first num_soft_mask images) and `gp_alpha` (float32 [b]).
    """
    if num_domains < 2:
        raise ValueError(f"`num_domains` must be >= 2 to pick another domain. Received: {num_domains}")
    if num_soft_mask < 0:
        raise ValueError(f"`num_soft_mask` must be >= 0. Received: num_soft_mask={num_soft_mask}")
    spec = dataset.element_spec
    if not isinstance(spec, dict) or "domain" not in spec:
        raise ValueError(f"add_gan_targets needs dict batches with a `domain` field. Received: {spec}")

    def add(step, batch):
        domain = batch["domain"]
        size = tf.shape(domain)[0]
        target_seed, alpha_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), step]), 2)
        )
        offset = tf.random.stateless_uniform(
            [size], seed=target_seed, minval=1, maxval=num_domains, dtype=tf.int64
        )
        return {
            **batch,
            "target_domain": tf.cast((tf.cast(domain, tf.int64) + offset) % num_domains, domain.dtype),
            "soft_mask_slot": tf.cast(tf.range(size) < num_soft_mask, tf.float32),
            "gp_alpha": tf.random.stateless_uniform([size], seed=alpha_seed),
        }

    return dataset.enumerate().map(add, num_parallel_calls=tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="bgshift_tf")
class SBSGAN(keras.Model):
    """SBSGAN: generator + discriminator trained with WGAN-GP, domain classification and eq. 1-4.

    Args:
        generator: `bgshift_tf.models.generator.Generator`.
        discriminator: `bgshift_tf.models.discriminator.Discriminator` with the same num_domains.
        global_batch_size: images per global batch (16 in the paper); every term's normaliser.
        num_soft_mask: soft-mask-slot images per global batch (default K + 1).
        lambda_adv, lambda_cls, lambda_rec, lambda_idc, lambda_bgs, lambda_sc, lambda_gp: loss weights;
            0 disables a term (not computed, reported as 0). lambda_cls weighs L_cls^r in D and L_cls^f in G.
        n_critic: D updates per G update (used by `train_step`; a custom loop reads it too).
    """

    def __init__(self, generator, discriminator, global_batch_size=16, num_soft_mask=None,
                 lambda_adv=1.0, lambda_cls=1.0, lambda_rec=10.0, lambda_idc=5.0, lambda_bgs=5.0,
                 lambda_sc=5.0, lambda_gp=10.0, n_critic=5, name="sbsgan", **kwargs):
        super().__init__(name=name, **kwargs)
        num_domains = generator.num_domains
        if discriminator.num_domains != num_domains:
            raise ValueError(
                f"generator and discriminator disagree on num_domains: "
                f"{num_domains} != {discriminator.num_domains}"
            )
        num_soft_mask = num_domains + 1 if num_soft_mask is None else int(num_soft_mask)
        if not 0 < num_soft_mask < global_batch_size:
            raise ValueError(
                f"`num_soft_mask` must be in [1, global_batch_size). Received: num_soft_mask="
                f"{num_soft_mask}, global_batch_size={global_batch_size}"
            )
        weights = dict(lambda_adv=lambda_adv, lambda_cls=lambda_cls, lambda_rec=lambda_rec,
                       lambda_idc=lambda_idc, lambda_bgs=lambda_bgs, lambda_sc=lambda_sc,
                       lambda_gp=lambda_gp)
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative or n_critic < 1:
            raise ValueError(f"Loss weights must be >= 0 and n_critic >= 1. Received: {negative}, "
                             f"n_critic={n_critic}")
        # === Networks ===
        self.generator = generator
        self.discriminator = discriminator
        # === Config ===
        self.num_domains = num_domains
        self.global_batch_size = int(global_batch_size)
        self.num_soft_mask = num_soft_mask
        self.n_critic = int(n_critic)
        for key, value in weights.items():
            setattr(self, key, float(value))
        # === Loss trackers ===
        self.trackers = {term: keras.metrics.Mean(name=term) for term in D_TERMS + G_TERMS}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        """Attach the two optimizers and create their slots now (outside any tf.function / replica context)."""
        super().compile(jit_compile=False, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)

    def call(self, images, training=False):
        """Inference: soft-mask images G(I, D̄), [B,H,W,3] -> [B,H,W,3] in [-1,1]."""
        return self.generator.soft_mask(images, training=training)

    def gradient_penalty(self, real, fake, alpha):
        """Per-example WGAN-GP term [B] on x_hat = alpha real + (1 - alpha) fake (alpha [B])."""
        return losses.gradient_penalty(lambda x: self.discriminator(x)[0], real, fake, alpha)

    def _share(self, per_example, count):
        """This replica's share of a global mean: sum over local examples / global count."""
        return tf.reduce_sum(per_example) / tf.cast(count, per_example.dtype)

    def discriminator_step(self, batch):
        """One D update on this replica's part of a global batch; returns its share of each D term."""
        # 1. Per-replica share of L_D, under a tape (see `discriminator_losses`).
        # 2. Gradients of the (loss-scaled, under mixed_float16) loss w.r.t. D's variables only (the optimizer
        #    unscales them and all-reduces them across replicas: SUM).
        # 3. One d_optimizer step.
        # (With lambda_adv = lambda_cls = lambda_gp = 0 every term is skipped: D gets no update.)
        with tf.GradientTape() as tape:
            loss, logs = self.discriminator_losses(batch)
            scaled = self.d_optimizer.scale_loss(loss)
        if self.lambda_adv or self.lambda_cls or self.lambda_gp:
            variables = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return logs

    def discriminator_losses(self, batch):
        """This replica's share of L_D (scalar) and of each D term (dict of scalars)."""
        # 1. One fake per image, no gradient into G: G(I, D̄) for soft-mask slots, G(I, D_target) otherwise.
        # 2. Critic maps and domain logits of reals and fakes.
        # 3. Per-example terms: WGAN critic, real-image domain CE (source labels), GP on interpolates.
        # 4. Weighted sum / global batch size.
        # (A zero weight skips its term: no fakes without L_adv or GP, no D pass on reals without L_adv or L_cls.)
        images, domain, slot = batch["image"], batch["domain"], batch["soft_mask_slot"]
        if self.lambda_adv or self.lambda_gp:
            fakes = tf.stop_gradient(self.generator.generate(images, batch["target_domain"], slot))
        if self.lambda_adv or self.lambda_cls:
            real_patch, real_domain = self.discriminator(images)
        zero = tf.zeros([tf.shape(images)[0]])
        adv = cls = gp = zero
        if self.lambda_adv:
            adv = losses.critic_loss(real_patch, self.discriminator(fakes)[0])
        if self.lambda_cls:
            cls = losses.domain_cross_entropy(real_domain, domain)
        if self.lambda_gp:
            alpha = batch.get("gp_alpha")
            if alpha is None:
                alpha = tf.random.uniform([tf.shape(images)[0]])
            gp = self.gradient_penalty(images, fakes, alpha)
        n = self.global_batch_size
        loss = self._share(self.lambda_adv * adv + self.lambda_cls * cls + self.lambda_gp * gp, n)
        return loss, {"d_loss": loss, "d_adv": self._share(adv, n), "d_cls": self._share(cls, n),
                      "d_gp": self._share(gp, n)}

    def generator_step(self, batch):
        """One G update on this replica's part of a global batch; returns its share of each G term."""
        # 1. Per-replica share of L_G, under a tape (see `generator_losses`).
        # 2. Gradients of the (loss-scaled, under mixed_float16) loss w.r.t. G's variables only (D's are read).
        # 3. One g_optimizer step.
        with tf.GradientTape() as tape:
            loss, logs = self.generator_losses(batch)
            scaled = self.g_optimizer.scale_loss(loss)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return logs

    def generator_losses(self, batch):
        """This replica's share of L_G (scalar) and of each G term (dict of scalars)."""
        # 1. fakes = G(I, D̄) for soft-mask slots, G(I, D_target) otherwise (one encoder pass).
        # 2. D on the fakes: L_adv, and L_cls^f toward the uniform 1/K (slots) or the one-hot target.
        # 3. L_rec: every fake back to its source domain through the style branch.
        # 4. L_idc on style fakes; L_bgs on soft-mask fakes.
        # 5. L_sc on slot images: their style transfers to the K-1 other domains, masked by the source mask.
        # 6. Each term / its global count (batch, style images or slots); weighted sum.
        images, masks, domain = batch["image"], batch["mask"], batch["domain"]
        target, slot = batch["target_domain"], tf.cast(batch["soft_mask_slot"], tf.float32)
        size = tf.shape(images)[0]
        zero = tf.zeros([size])
        n, n_slot = self.global_batch_size, self.num_soft_mask
        n_style = n - n_slot
        fakes = self.generator.generate(images, target, slot, training=True)
        adv = cls = rec = idc = bgs = zero
        sc = tf.zeros([0])
        if self.lambda_adv or self.lambda_cls:
            fake_patch, fake_domain = self.discriminator(fakes)
            if self.lambda_adv:
                adv = losses.generator_adversarial_loss(fake_patch)
            if self.lambda_cls:
                targets = tf.where(
                    slot[:, None] > 0,
                    uniform_indicator(size, self.num_domains),
                    onehot_indicator(target, self.num_domains),
                )
                cls = losses.soft_domain_cross_entropy(fake_domain, targets)
        if self.lambda_rec:
            rec = losses.reconstruction_loss(self.generator.style_transfer(fakes, domain, training=True), images)
        if self.lambda_idc:
            idc = losses.identity_loss(fakes, images) * (1.0 - slot)
        if self.lambda_bgs:
            bgs = losses.background_suppression_loss(fakes, images, masks) * slot
        if self.lambda_sc:
            sc = self._style_consistency(images, masks, domain, slot, fakes)
        logs = {"g_adv": self._share(adv, n), "g_cls": self._share(cls, n), "g_rec": self._share(rec, n),
                "g_idc": self._share(idc, n_style), "g_bgs": self._share(bgs, n_slot),
                "g_sc": self._share(sc, n_slot)}
        loss = (self.lambda_adv * logs["g_adv"] + self.lambda_cls * logs["g_cls"]
                + self.lambda_rec * logs["g_rec"] + self.lambda_idc * logs["g_idc"]
                + self.lambda_bgs * logs["g_bgs"] + self.lambda_sc * logs["g_sc"])
        return loss, {"g_loss": loss, **logs}

    def _style_consistency(self, images, masks, domain, slot, fakes):
        """L_sc per slot image, [n] with n = min(num_soft_mask, local batch); zero for non-slot fillers.

        Slot images are gathered first, a fixed number per replica, so no replica meets an empty batch
        (a replica without slots computes n zero-weighted fillers).
        """
        local = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        count = min(self.num_soft_mask, local) if isinstance(local, int) else tf.minimum(self.num_soft_mask, local)
        index = tf.argsort(slot, direction="DESCENDING", stable=True)[:count]
        sources = tf.cast(tf.gather(domain, index), tf.int64)
        picked = tf.gather(images, index)
        others_k = self.num_domains - 1
        # Targets (s + j) mod K for j = 1..K-1: exactly the other domains, one batched pass.
        targets = (sources[None] + tf.range(1, self.num_domains, dtype=tf.int64)[:, None]) % self.num_domains
        repeated = tf.reshape(tf.tile(picked[None], [others_k, 1, 1, 1, 1]), [-1, *images.shape[1:]])
        others = self.generator.style_transfer(repeated, tf.reshape(targets, [-1]), training=True)
        others = tf.reshape(others, [others_k, -1, *images.shape[1:]])
        per_example = losses.style_consistency_loss(
            tf.gather(fakes, index), picked, tf.gather(masks, index), others
        )
        return per_example * tf.gather(slot, index)

    def train_step(self, data):
        """Single-device `fit`: one D update per batch, one G update every n_critic-th D update."""
        # 1. One critic update on this batch.
        # 2. If the critic has now made a multiple of n_critic updates, one generator update (same batch).
        # 3. Update the trackers of the terms that were computed; return every tracker's running mean.
        self._track(self.discriminator_step(data))

        def generator_update():
            self._track(self.generator_step(data))
            return tf.constant(True)

        tf.cond(self.d_optimizer.iterations % self.n_critic == 0, generator_update, lambda: tf.constant(False))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _track(self, logs):
        for name, value in logs.items():
            self.trackers[name].update_state(value)

    def get_config(self):
        return {
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "global_batch_size": self.global_batch_size,
            "num_soft_mask": self.num_soft_mask,
            "lambda_adv": self.lambda_adv,
            "lambda_cls": self.lambda_cls,
            "lambda_rec": self.lambda_rec,
            "lambda_idc": self.lambda_idc,
            "lambda_bgs": self.lambda_bgs,
            "lambda_sc": self.lambda_sc,
            "lambda_gp": self.lambda_gp,
            "n_critic": self.n_critic,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def checkpoint_trackables(model):
    """What a run checkpoints, by name (the `trackables` of `training.loop.train_loop`):
    {"generator", "discriminator", "g_optimizer", "d_optimizer"}. `load_generator` reads `generator`."""
    return {
        "generator": model.generator,
        "discriminator": model.discriminator,
        "g_optimizer": model.g_optimizer,
        "d_optimizer": model.d_optimizer,
    }


def load_generator(run_dir, precision="float32"):
    """Rebuild the generator of a training run and restore its latest checkpoint.

    Args:
        run_dir: a run directory with `config.json` (key "generator": Generator.get_config(), or its
            keras serialisation) and `checkpoints/` (tf.train.Checkpoint with attribute `generator`).
        precision: the compute precision to rebuild it in (a `training.precision` setting), whatever
            the run trained in (checkpoints hold float32 variables); its output stays float32.

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
    tf.train.Checkpoint(generator=generator).restore(latest).expect_partial().assert_existing_objects_matched()
    return generator
