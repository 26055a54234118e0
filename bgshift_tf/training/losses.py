"""SBSGAN losses (paper eq. 1-6, SPEC §2) as pure functions returning PER-EXAMPLE values [B].

Callers weight, sum and divide by a GLOBAL constant (the global batch size, or the global number of images
a term applies to), so the update does not depend on how many replicas share the batch (SPEC §5).
Images are float32 NHWC in [-1, 1]; masks float32 [B,H,W,1] in {0, 1}; critic outputs are PatchGAN maps
[B,h,w,1]; domain logits [B,K]. Every loss is computed and returned in float32 whatever its inputs' dtype
(bf16/fp16 under a mixed precision policy, see `core.precision`).

`LossWeights` is the one definition of the loss weights (names, paper values, help texts): the SBSGAN
model, its trainer config, the `train_gan` flags and the "differs from the paper" note all read it.
"""

import dataclasses

import tensorflow as tf

from bgshift_tf.data.images import hard_mask


def _weight(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The SBSGAN loss weights, defaulting to the paper's (SPEC §2); 0 disables a term (not computed)."""

    lambda_adv: float = _weight(1.0, "Weight of L_adv (WGAN) in L_D and L_G; 0 disables it.")
    lambda_cls: float = _weight(1.0, "Weight of L_cls^r (in L_D) and L_cls^f (in L_G).")
    lambda_rec: float = _weight(10.0, "Weight of L_rec.")
    lambda_idc: float = _weight(5.0, "Weight of L_idc.")
    lambda_bgs: float = _weight(5.0, "Weight of L_bgs.")
    lambda_sc: float = _weight(5.0, "Weight of L_sc (0 = the paper's 'w/o L_sc' ablation).")
    lambda_gp: float = _weight(10.0, "Weight of the WGAN-GP gradient penalty.")

    def __post_init__(self):
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"Loss weight `{name}` must be a number >= 0. Received: {name}={value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def names(cls):
        """The weight names, in declaration order (also the config keys and flag names)."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, config, source="config"):
        """The weights of a flat trainer config: its `lambda_*` keys must be exactly `names()`.

        A missing key raises (no silent default), and so does an unknown `lambda_*` key (a typo or a
        weight this class does not define); `source` names the config in the message.
        """
        given = {key for key in config if key.startswith("lambda_")}
        missing, unknown = sorted(set(cls.names()) - given), sorted(given - set(cls.names()))
        if missing or unknown:
            raise ValueError(f"{source}: the loss weights must be exactly {list(cls.names())}. "
                             f"Missing: {missing}; unknown: {unknown}")
        return cls(**{name: config[name] for name in cls.names()})


def _mean_per_example(x):
    """Mean over every axis but the first, in float32: [B, ...] -> float32 [B]."""
    return tf.reduce_mean(tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1]), axis=1)


def l1_per_example(a, b):
    """Mean absolute difference per example, in float32: [B, ...] x2 -> [B]."""
    return _mean_per_example(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def mse_per_example(a, b):
    """Mean squared difference per example, in float32: [B, ...] x2 -> [B]."""
    return _mean_per_example(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def critic_loss(real_logits, fake_logits):
    """WGAN critic term per example: mean(D(fake)) - mean(D(real)), averaged over patches -> [B]."""
    return _mean_per_example(fake_logits) - _mean_per_example(real_logits)


def generator_adversarial_loss(fake_logits):
    """WGAN generator term per example: -mean(D(fake)) over patches -> [B]."""
    return -_mean_per_example(fake_logits)


def gradient_penalty(critic_fn, real, fake, alpha):
    """WGAN-GP term per example: (||d sum(critic(x_hat)) / d x_hat||_2 - 1)^2 with x_hat on the real-fake line.

    Args:
        critic_fn: callable [B,H,W,C] -> critic map [B, ...]; examples must not interact (no batch norm).
        real, fake: [B,H,W,C], any float dtype (the interpolates and the gradient norm are float32; the
            critic may compute in bf16/fp16 inside, its double backprop then runs in that precision).
        alpha: float32 [B] in [0, 1], one interpolation weight per example: x_hat = alpha real + (1-alpha) fake.

    Returns:
        float32 [B]. Differentiable w.r.t. the critic's variables when called under an outer tape.
    """
    alpha = tf.reshape(tf.cast(alpha, tf.float32), [-1, 1, 1, 1])
    interpolates = alpha * tf.cast(real, tf.float32) + (1.0 - alpha) * tf.cast(fake, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        total = tf.reduce_sum(tf.cast(critic_fn(interpolates), tf.float32))
    grads = tf.cast(tape.gradient(total, interpolates), tf.float32)
    norms = tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(grads, [tf.shape(grads)[0], -1])), axis=1))
    return tf.square(norms - 1.0)


def domain_cross_entropy(logits, labels):
    """Softmax cross-entropy with hard labels: logits [B,K], int labels [B] -> [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))


def soft_domain_cross_entropy(logits, target_probs):
    """Softmax cross-entropy with soft labels: logits [B,K], target distributions [B,K] -> [B].

    With the uniform target 1/K (soft-mask fakes), the loss is minimal when D cannot tell the domain.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    return -tf.reduce_sum(tf.cast(target_probs, tf.float32) * log_probs, axis=-1)


def identity_loss(style_transferred, images):
    """L_idc (eq. 1): |G(I, D_k) - I|_1 per example -> [B]."""
    return l1_per_example(style_transferred, images)


def reconstruction_loss(reconstructed, images):
    """L_rec (eq. 2): |G(G(I, D_k or D̄), D_s) - I|_1 per example -> [B]."""
    return l1_per_example(reconstructed, images)


def background_suppression_loss(soft_mask_images, images, masks):
    """L_bgs (eq. 3, SPEC: MSE): mean squared error between masked(I) and G(I, D̄) -> [B]."""
    return mse_per_example(hard_mask(images, masks), soft_mask_images)


def style_consistency_loss(soft_mask_images, images, masks, other_domain_images):
    """L_sc (eq. 4): |G(I,D̄) - masked(I)|_1 + sum_{k != s} |G(I,D̄) - masked(G(I,D_k))|_1 -> [B].

    Args:
        soft_mask_images: G(I, D̄), [B,H,W,3].
        images: I, [B,H,W,3]; masks: M(I), [B,H,W,1] (the SOURCE image's mask masks every term).
        other_domain_images: G(I, D_k) for the K-1 domains k != s, [K-1, B, H, W, 3].
    """
    loss = l1_per_example(soft_mask_images, hard_mask(images, masks))
    masked_others = hard_mask(tf.cast(other_domain_images, tf.float32), masks[None])
    per_domain = tf.reduce_mean(tf.abs(tf.cast(soft_mask_images, tf.float32)[None] - masked_others), axis=[2, 3, 4])
    return loss + tf.reduce_sum(per_domain, axis=0)
