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
`discriminator_generator_step` does both on one batch and makes the fakes once (G has not changed
between the two updates, so they are the fakes either step would make): the same update, one G forward
pass fewer. `training.loop.train_loop` runs them (`gan_run.gan_steps`): the one training path, on 1 or N
devices. With `g_ema_decay` > 0, `generator_ema` keeps an exponential moving average of G's weights after
every G update (warmed up: decay min(g_ema_decay, (1 + n) / (10 + n)) at G update n), which generation,
the report and export use (`gan_checkpoint.load_generator`).
Each loss is a table of (weight, name, term) entries, `D_TERMS` and `G_TERMS`, summed by one method.
"""

import dataclasses
import functools

import keras
import tensorflow as tf

from bgshift_tf.models.generator import onehot_indicator, uniform_indicator
from bgshift_tf.training import losses


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


class _LossInputs:
    """What the terms of one loss read: the batch, the fakes and D's outputs on reals and fakes.

    Each is computed once, on first use, so a term whose weight is 0 costs nothing (L_D makes no fakes
    without L_adv or GP, no D pass on reals without L_adv or L_cls). `training`: True for L_G (G in
    training mode, gradients flow into G), False for L_D (the fakes are constants).
    """

    def __init__(self, model, batch, training):
        self.model, self.batch, self.training = model, batch, training
        self.images, self.masks, self.domain = batch["image"], batch["mask"], batch["domain"]
        self.target, self.slot = batch["target_domain"], tf.cast(batch["soft_mask_slot"], tf.float32)
        self.size = tf.shape(self.images)[0]

    @functools.cached_property
    def fakes(self):
        """G(I, D̄) for soft-mask slots, G(I, D_target) otherwise (one encoder pass)."""
        fakes = self.model.generator.generate(self.images, self.target, self.slot, training=self.training)
        return fakes if self.training else tf.stop_gradient(fakes)

    @functools.cached_property
    def real_outputs(self):
        return self.model.discriminator(self.images)

    @functools.cached_property
    def fake_outputs(self):
        return self.model.discriminator(self.fakes)


# Each term: (LossWeights field, logged name, fn(model, inputs) -> (per-example values [n], global count)).
# The loss is the weighted sum of each term's share (sum over local examples / global count); a zero
# weight skips the term (reported as 0). Adding a term = its function in `losses` + one entry here.


def _d_adv(model, x):
    return losses.critic_loss(x.real_outputs[0], x.fake_outputs[0]), model.global_batch_size


def _d_cls(model, x):
    return losses.domain_cross_entropy(x.real_outputs[1], x.domain), model.global_batch_size


def _d_gp(model, x):
    alpha = x.batch.get("gp_alpha")
    if alpha is None:
        alpha = tf.random.uniform([x.size])
    return model.gradient_penalty(x.images, x.fakes, alpha), model.global_batch_size


def _g_adv(model, x):
    return losses.generator_adversarial_loss(x.fake_outputs[0]), model.global_batch_size


def _g_cls(model, x):
    """L_cls^f toward the uniform 1/K (soft-mask slots) or the one-hot target (style images)."""
    k = model.num_domains
    targets = tf.where(x.slot[:, None] > 0, uniform_indicator(x.size, k), onehot_indicator(x.target, k))
    return losses.soft_domain_cross_entropy(x.fake_outputs[1], targets), model.global_batch_size


def _g_rec(model, x):
    """Every fake back to its source domain through the style branch."""
    reconstructed = model.generator.style_transfer(x.fakes, x.domain, training=True)
    return losses.reconstruction_loss(reconstructed, x.images), model.global_batch_size


def _g_idc(model, x):
    return losses.identity_loss(x.fakes, x.images) * (1.0 - x.slot), model.global_batch_size - model.num_soft_mask


def _g_bgs(model, x):
    return losses.background_suppression_loss(x.fakes, x.images, x.masks) * x.slot, model.num_soft_mask


def _g_sc(model, x):
    return model.style_consistency(x), model.num_soft_mask


D_TERMS = (("lambda_adv", "d_adv", _d_adv), ("lambda_cls", "d_cls", _d_cls), ("lambda_gp", "d_gp", _d_gp))
G_TERMS = (("lambda_adv", "g_adv", _g_adv), ("lambda_cls", "g_cls", _g_cls), ("lambda_rec", "g_rec", _g_rec),
           ("lambda_idc", "g_idc", _g_idc), ("lambda_bgs", "g_bgs", _g_bgs), ("lambda_sc", "g_sc", _g_sc))


@keras.saving.register_keras_serializable(package="bgshift_tf")
class SBSGAN(keras.Model):
    """SBSGAN: generator + discriminator trained with WGAN-GP, domain classification and eq. 1-4.

    Args:
        generator: `bgshift_tf.models.generator.Generator`.
        discriminator: `bgshift_tf.models.discriminator.Discriminator` with the same num_domains.
        global_batch_size: images per global batch (16 in the paper); every term's normaliser.
        num_soft_mask: soft-mask-slot images per global batch (default K + 1).
        loss_weights: `losses.LossWeights` (default: the paper's); lambda_cls weighs L_cls^r in D and
            L_cls^f in G.
        n_critic: D updates per G update (the schedule of `gan_run.gan_steps`).
        generator_ema: a second Generator of the same config to hold the moving average of `generator`'s
            weights (its weights are set to `generator`'s here), or None for no average.
        g_ema_decay: the average's decay in [0, 1); needs `generator_ema` when > 0.
    """

    def __init__(self, generator, discriminator, global_batch_size=16, num_soft_mask=None, loss_weights=None,
                 n_critic=5, generator_ema=None, g_ema_decay=0.0, name="sbsgan", **kwargs):
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
        loss_weights = losses.LossWeights() if loss_weights is None else loss_weights
        if not isinstance(loss_weights, losses.LossWeights):
            raise TypeError(f"`loss_weights` must be a losses.LossWeights. Received: loss_weights={loss_weights!r}")
        if n_critic < 1:
            raise ValueError(f"`n_critic` must be >= 1. Received: n_critic={n_critic}")
        if not 0.0 <= g_ema_decay < 1.0 or (g_ema_decay > 0) != (generator_ema is not None):
            raise ValueError(f"`g_ema_decay` must be in [0, 1), > 0 exactly when a `generator_ema` is given. "
                             f"Received: g_ema_decay={g_ema_decay}, generator_ema={generator_ema!r}")
        if generator_ema is not None:
            if generator_ema.get_config() != generator.get_config():
                raise ValueError(f"`generator_ema` must have the generator's config. Received: "
                                 f"{generator_ema.get_config()} vs {generator.get_config()}")
            generator_ema.set_weights(generator.get_weights())
        # === Networks ===
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = generator_ema
        # === Config ===
        self.num_domains = num_domains
        self.global_batch_size = int(global_batch_size)
        self.num_soft_mask = num_soft_mask
        self.loss_weights = loss_weights
        self.n_critic = int(n_critic)
        self.g_ema_decay = float(g_ema_decay)
        self.built = True

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

    def _weighted_sum(self, terms, inputs, total_name):
        """This replica's share of a loss (scalar) and of each of its `terms` (dict of scalars, with the total)."""
        logs, loss = {}, tf.constant(0.0)
        for weight_name, log_name, term in terms:
            weight = getattr(self.loss_weights, weight_name)
            logs[log_name] = tf.constant(0.0)
            if weight:
                per_example, count = term(self, inputs)
                logs[log_name] = tf.reduce_sum(per_example) / tf.cast(count, per_example.dtype)
                loss = loss + weight * logs[log_name]
        return loss, {total_name: loss, **logs}

    def discriminator_step(self, batch):
        """One D update on this replica's part of a global batch; returns its share of each D term."""
        # 1. Per-replica share of L_D, under a tape (see `discriminator_losses`).
        # 2. Gradients of the (loss-scaled, under mixed_float16) loss w.r.t. D's variables only (the optimizer
        #    unscales them and all-reduces them across replicas: SUM).
        # 3. One d_optimizer step.
        # (With every D weight 0 every term is skipped: D gets no update.)
        return self._discriminator_update(_LossInputs(self, batch, training=False))

    def _discriminator_update(self, inputs):
        with tf.GradientTape() as tape:
            loss, logs = self._weighted_sum(D_TERMS, inputs, "d_loss")
            scaled = self.d_optimizer.scale_loss(loss)
        if any(getattr(self.loss_weights, weight) for weight, _, _ in D_TERMS):
            variables = self.discriminator.trainable_variables
            self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return logs

    def discriminator_generator_step(self, batch):
        """One D update then one G update on the same batch, the fakes made once; returns both steps' logs.

        The same updates as `discriminator_step(batch)` followed by `generator_step(batch)`.
        """
        # 1. Under G's tape: the fakes, G in training mode (instance norm has no training behaviour, so
        #    they equal the fakes of the D step, which runs G with training=False).
        # 2. Outside G's tape: the D update on those fakes as constants (`discriminator_step`).
        # 3. Still under G's tape: L_G with the updated D on the same fakes, then one G update (and the
        #    weight average), as in `generator_step`.
        with tf.GradientTape() as tape:
            g_inputs = _LossInputs(self, batch, training=True)
            fakes = g_inputs.fakes  # made here, on the tape
            with tape.stop_recording():
                d_inputs = _LossInputs(self, batch, training=False)
                d_inputs.fakes = tf.stop_gradient(fakes)
                d_logs = self._discriminator_update(d_inputs)
            loss, g_logs = self._weighted_sum(G_TERMS, g_inputs, "g_loss")
            scaled = self.g_optimizer.scale_loss(loss)
        self._generator_update(tape, scaled)
        return {**d_logs, **g_logs}

    def _generator_update(self, tape, scaled_loss):
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        if self.generator_ema is not None:
            tf.distribute.get_replica_context().merge_call(self._update_average)

    def _update_average(self, strategy):
        """Cross-replica: average <- decay * average + (1 - decay) * weight, on every device's copy."""
        updates = tf.cast(self.g_optimizer.iterations.value, tf.float32)  # G updates so far (this one included)
        decay = tf.minimum(self.g_ema_decay, (1.0 + updates) / (10.0 + updates))
        for average, weight in zip(self.generator_ema.weights, self.generator.weights):
            strategy.extended.update(
                average.value, lambda a, w: a.assign(decay * a + (1.0 - decay) * tf.cast(w, a.dtype)),
                args=(weight.value,))

    def discriminator_losses(self, batch):
        """This replica's share of L_D (scalar) and of each D term (dict of scalars)."""
        # 1. One fake per image, no gradient into G: G(I, D̄) for soft-mask slots, G(I, D_target) otherwise.
        # 2. Critic maps and domain logits of reals and fakes, as the terms ask for them.
        # 3. Per-example terms (D_TERMS): WGAN critic, real-image domain CE (source labels), GP on interpolates.
        # 4. Weighted sum of each term / the global batch size.
        return self._weighted_sum(D_TERMS, _LossInputs(self, batch, training=False), "d_loss")

    def generator_step(self, batch):
        """One G update on this replica's part of a global batch; returns its share of each G term."""
        # 1. Per-replica share of L_G, under a tape (see `generator_losses`).
        # 2. Gradients of the (loss-scaled, under mixed_float16) loss w.r.t. G's variables only (D's are read).
        # 3. One g_optimizer step.
        # 4. With a weight average: its update.
        with tf.GradientTape() as tape:
            loss, logs = self.generator_losses(batch)
            scaled = self.g_optimizer.scale_loss(loss)
        self._generator_update(tape, scaled)
        return logs

    def generator_losses(self, batch):
        """This replica's share of L_G (scalar) and of each G term (dict of scalars)."""
        # 1. fakes = G(I, D̄) for soft-mask slots, G(I, D_target) otherwise (one encoder pass).
        # 2. D on the fakes: L_adv, and L_cls^f toward the uniform 1/K (slots) or the one-hot target.
        # 3. L_rec: every fake back to its source domain through the style branch.
        # 4. L_idc on style fakes; L_bgs on soft-mask fakes.
        # 5. L_sc on slot images: their style transfers to the K-1 other domains, masked by the source mask.
        # 6. Each term (G_TERMS) / its global count (batch, style images or slots); weighted sum.
        return self._weighted_sum(G_TERMS, _LossInputs(self, batch, training=True), "g_loss")

    def style_consistency(self, inputs):
        """L_sc per slot image, [n] with n = min(num_soft_mask, local batch); zero for non-slot fillers.

        Slot images are gathered first, a fixed number per replica, so no replica meets an empty batch
        (a replica without slots computes n zero-weighted fillers). `inputs`: a `_LossInputs`.
        """
        images, slot = inputs.images, inputs.slot
        local = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        count = min(self.num_soft_mask, local) if isinstance(local, int) else tf.minimum(self.num_soft_mask, local)
        index = tf.argsort(slot, direction="DESCENDING", stable=True)[:count]
        sources = tf.cast(tf.gather(inputs.domain, index), tf.int64)
        picked = tf.gather(images, index)
        others_k = self.num_domains - 1
        # Targets (s + j) mod K for j = 1..K-1: exactly the other domains, one batched pass.
        targets = (sources[None] + tf.range(1, self.num_domains, dtype=tf.int64)[:, None]) % self.num_domains
        repeated = tf.reshape(tf.tile(picked[None], [others_k, 1, 1, 1, 1]), [-1, *images.shape[1:]])
        others = self.generator.style_transfer(repeated, tf.reshape(targets, [-1]), training=True)
        others = tf.reshape(others, [others_k, -1, *images.shape[1:]])
        per_example = losses.style_consistency_loss(
            tf.gather(inputs.fakes, index), picked, tf.gather(inputs.masks, index), others
        )
        return per_example * tf.gather(slot, index)

    def get_config(self):
        return {
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "global_batch_size": self.global_batch_size,
            "num_soft_mask": self.num_soft_mask,
            "loss_weights": dataclasses.asdict(self.loss_weights),
            "n_critic": self.n_critic,
            "generator_ema": (None if self.generator_ema is None
                              else keras.saving.serialize_keras_object(self.generator_ema)),
            "g_ema_decay": self.g_ema_decay,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        if config.get("generator_ema") is not None:
            config["generator_ema"] = keras.saving.deserialize_keras_object(config["generator_ema"])
        config["loss_weights"] = losses.LossWeights(**config["loss_weights"])
        return cls(**config)
