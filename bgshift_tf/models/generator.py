"""SBSGAN generator (paper §3.3, SPEC §2): a shared StarGAN encoder + trunk and two unshared decoders.

    [image | indicator tiled to HxW]  (3 + K channels)
      -> 7x7 conv F -> 4x4/2 conv 2F -> 4x4/2 conv 4F -> N residual blocks      ("encoder", shared)
      -> soft_mask_branch: 4x4/2 deconv 2F -> 4x4/2 deconv F -> 7x7 conv 3 + tanh   (uniform 1/K indicator)
      -> style_branch:     same structure, its own weights                           (one-hot indicator)

F = base_filters (64 in the paper), N = num_res_blocks (6). `upsample` other than "transposed" replaces
each deconv by a nearest / bilinear resize + 3x3 conv (against checkerboard artefacts; not the paper's).
`skips=True` adds U-Net skip connections (not the paper's; pix2pix, Isola et al. 2017): each decoder
concatenates the encoder's down1 output (2F) after its first upsampling and the stem's output (F) after its
second, so the body's detail need not pass the 4x-downsampled trunk.
`attention` ("soft_mask" or "both"; not the paper's) gives that branch (or both) an attention-mask output
(`models.layers.AttentionBlend`, GANimation): beside its 7x7 output conv a second 7x7 conv (`_keep_conv`, one
channel) predicts a keep-mask, and the output is keep * input + (1 - keep) * content. `keep_bias` is that
conv's initial bias (0 = Keras' zeros: keep starts near 0.5); > 0 starts the branch near a copy of its input
(sigmoid(2) = 0.88), so that training has to learn where to paint rather than how to redraw the body.
Instance norm everywhere except the output conv. Images are float32 NHWC in [-1, 1]; outputs are float32 [B, H, W, 3] in [-1, 1]. Under a mixed
precision policy (`core.precision`) the layers compute in bf16/fp16, instance-norm statistics and the
final tanh in float32.
"""

import keras
import tensorflow as tf
from keras import ops

from bgshift_tf.data import variants
from bgshift_tf.models.layers import (UPSAMPLE_MODES, AttentionBlend, apply_conv_norm_relu, apply_residual_block,
                                     apply_upsample_norm_relu)

# The `branch` argument of `call`, in the image-variant vocabulary. Only the argument is named so: the
# decoders keep their layer names (`soft_mask_branch`, `style_branch`), which checkpoints and .keras
# files store, so existing weights still load.
BRANCHES = (variants.SOFT_MASK, variants.STYLE_TRANSFER)
# The `attention` argument: which decoders blend their output with the input image (AttentionBlend).
ATTENTION_MODES = ("none", "soft_mask", "both")


def uniform_indicator(batch_size, num_domains):
    """The soft-mask indicator D̄: float32 [batch_size, num_domains], every value 1/num_domains."""
    return ops.full((batch_size, num_domains), 1.0 / num_domains, dtype="float32")


def onehot_indicator(domains, num_domains):
    """The style indicator D_k: int [B] domain indices -> float32 one-hot [B, num_domains]."""
    return ops.one_hot(ops.cast(domains, "int32"), num_domains, dtype="float32")


def _build_encoder(image_size, in_channels, base_filters, num_res_blocks, skips, name):
    """The shared encoder: its trunk features, or with `skips` [trunk, down1 output, stem output]."""
    inputs = keras.Input((*image_size, in_channels), name=f"{name}_input")
    stem = apply_conv_norm_relu(inputs, base_filters, 7, name=f"{name}_stem")
    down1 = apply_conv_norm_relu(stem, base_filters * 2, 4, strides=2, name=f"{name}_down1")
    x = apply_conv_norm_relu(down1, base_filters * 4, 4, strides=2, name=f"{name}_down2")
    for i in range(num_res_blocks):
        x = apply_residual_block(x, name=f"{name}_res{i + 1}")
    return keras.Model(inputs, [x, down1, stem] if skips else x, name=name)


def _build_decoder(feature_shapes, base_filters, upsample, image_shape, attention, name, keep_bias=0.0):
    """A decoder over the encoder's output: one feature shape, or three ([trunk, down1, stem]) for skips.
    With `attention` it also takes the input image (its last input) and blends its output with it."""
    skips = len(feature_shapes) == 3
    inputs = [keras.Input(shape, name=f"{name}_input{i or ''}") for i, shape in enumerate(feature_shapes)]
    x = apply_upsample_norm_relu(inputs[0], base_filters * 2, upsample, name=f"{name}_up1")
    if skips:
        x = keras.layers.Concatenate(name=f"{name}_skip1")([x, inputs[1]])
    x = apply_upsample_norm_relu(x, base_filters, upsample, name=f"{name}_up2")
    if skips:
        x = keras.layers.Concatenate(name=f"{name}_skip2")([x, inputs[2]])
    content = keras.layers.Conv2D(3, 7, padding="same", name=f"{name}_out_conv")(x)
    # The image leaves in float32 whatever the compute precision (losses and saved images read it).
    if attention:
        keep = keras.layers.Conv2D(1, 7, padding="same", bias_initializer=keras.initializers.Constant(keep_bias),
                                   name=f"{name}_keep_conv")(x)
        inputs.append(keras.Input(image_shape, name=f"{name}_image"))
        outputs = AttentionBlend(dtype="float32", name=f"{name}_attention")([content, keep, inputs[-1]])
    else:
        outputs = keras.layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(content)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


@keras.saving.register_keras_serializable(package="bgshift_tf")
class Generator(keras.Model):
    """SBSGAN generator G(I, D).

    Args:
        num_domains: K, the number of training domains (indicator channels).
        image_size: (H, W), both divisible by 4.
        base_filters: width F of the first conv (64 in the paper); the trunk has 4F channels.
        num_res_blocks: residual blocks in the shared trunk (6 in the paper).
        upsample: how the decoders upsample (`models.layers.UPSAMPLE_MODES`): "transposed" (the paper's
            4x4 stride-2 deconv), "nearest" or "bilinear" (resize + 3x3 conv).
        skips: U-Net skip connections from the encoder to both decoders (not the paper's; see above).
        attention: `ATTENTION_MODES`: "none" (the paper's), "soft_mask" or "both" (those decoders blend their
            output with the input image through a predicted keep-mask; not the paper's, see above).
        keep_bias: initial bias of the keep-mask logits (with `attention`; 0 = Keras' default).
        name: model name.

    `call((images, indicator), branch)` runs one branch; `soft_mask(images)` and
    `style_transfer(images, target_domains)` build the indicator for you and trace cleanly in a
    `tf.function` (the branch is chosen in Python, never from tensor values).
    """

    def __init__(self, num_domains=3, image_size=(256, 128), base_filters=64, num_res_blocks=6,
                 upsample="transposed", skips=False, attention="none", keep_bias=0.0, name="generator", **kwargs):
        super().__init__(name=name, **kwargs)
        image_size = tuple(int(s) for s in image_size)
        if num_domains < 2:
            raise ValueError(f"`num_domains` must be >= 2. Received: num_domains={num_domains}")
        if len(image_size) != 2 or any(s <= 0 or s % 4 for s in image_size):
            raise ValueError(
                f"`image_size` must be (H, W) with H and W positive multiples of 4. "
                f"Received: image_size={image_size}"
            )
        if base_filters < 1 or num_res_blocks < 0:
            raise ValueError(
                f"`base_filters` must be >= 1 and `num_res_blocks` >= 0. Received: "
                f"base_filters={base_filters}, num_res_blocks={num_res_blocks}"
            )
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"`upsample` must be one of {UPSAMPLE_MODES}. Received: upsample={upsample!r}")
        if attention not in ATTENTION_MODES:
            raise ValueError(f"`attention` must be one of {ATTENTION_MODES}. Received: attention={attention!r}")
        # === Config ===
        self.num_domains = int(num_domains)
        self.image_size = image_size
        self.base_filters = int(base_filters)
        self.num_res_blocks = int(num_res_blocks)
        self.upsample = upsample
        self.skips = bool(skips)
        self.attention = attention
        self.keep_bias = float(keep_bias)

        # === Layers ===
        self.encoder = _build_encoder(
            image_size, 3 + self.num_domains, self.base_filters, self.num_res_blocks, self.skips, name="encoder"
        )
        feature_shapes = [t.shape[1:] for t in tf.nest.flatten(self.encoder.output)]
        image_shape = (*image_size, 3)
        self.soft_mask_branch = _build_decoder(feature_shapes, self.base_filters, upsample, image_shape,
                                               attention != "none", name="soft_mask_branch", keep_bias=self.keep_bias)
        self.style_branch = _build_decoder(feature_shapes, self.base_filters, upsample, image_shape,
                                           attention == "both", name="style_branch", keep_bias=self.keep_bias)
        self.built = True

    def call(self, inputs, branch=variants.STYLE_TRANSFER, training=False):
        """Generate images.

        Args:
            inputs: (images float32 [B,H,W,3] in [-1,1], indicator float32 [B,K]).
            branch: "style_transfer" (one-hot indicators) or "soft_mask" (the uniform indicator).
            training: unused by instance norm (always per-image statistics); passed for Keras.

        Returns:
            float32 [B, H, W, 3] in [-1, 1].
        """
        if branch not in BRANCHES:
            raise ValueError(f"`branch` must be one of {BRANCHES}. Received: branch={branch!r}")
        images, indicator = inputs
        features = self._encode(images, indicator, training)
        decoder = self.soft_mask_branch if branch == variants.SOFT_MASK else self.style_branch
        return self._decode(decoder, features, images, training)

    def _decode(self, decoder, features, images, training):
        """decoder(features), with the images as its last input when it has an attention output."""
        if len(decoder.inputs) > len(tf.nest.flatten(features)):
            features = [*tf.nest.flatten(features), images]
        return decoder(features, training=training)

    def _encode(self, images, indicator, training):
        height, width = self.image_size
        tiled = ops.broadcast_to(
            ops.reshape(ops.cast(indicator, images.dtype), (-1, 1, 1, self.num_domains)),
            (ops.shape(images)[0], height, width, self.num_domains),
        )
        return self.encoder(ops.concatenate([images, tiled], axis=-1), training=training)

    def soft_mask(self, images, training=False):
        """G(I, D̄): float32 [B,H,W,3] in [-1,1] -> soft-mask images (suppressed background), same shape."""
        indicator = uniform_indicator(ops.shape(images)[0], self.num_domains)
        return self((images, indicator), branch=variants.SOFT_MASK, training=training)

    def style_transfer(self, images, target_domains, training=False):
        """G(I, D_k): images [B,H,W,3] in [-1,1], int target_domains [B] in [0,K) -> [B,H,W,3] in [-1,1]."""
        indicator = onehot_indicator(target_domains, self.num_domains)
        return self((images, indicator), branch=variants.STYLE_TRANSFER, training=training)

    def generate(self, images, target_domains, soft_mask_slot, training=False):
        """Per-example mix used in training: G(I, D̄) where `soft_mask_slot`, else G(I, D_target).

        One encoder pass with per-example indicators; each decoder then runs only on its own examples
        (gathered, decoded, put back in batch order), so the decoders cost one batch, not two. A
        sub-batch that would be empty (a replica without slots) decodes one spare example instead
        (oneDNN convolutions fail on an empty batch), which is then dropped.

        Args:
            images: float32 [B,H,W,3] in [-1,1].
            target_domains: int [B] in [0,K) (ignored where soft_mask_slot is set).
            soft_mask_slot: float/bool [B]; nonzero selects the soft-mask branch.

        Returns:
            float32 [B,H,W,3] in [-1,1]; gradients reach only the branch each example used.
        """
        use_soft_mask = ops.reshape(ops.cast(soft_mask_slot, "bool"), (-1, 1))
        indicator = ops.where(
            use_soft_mask,
            uniform_indicator(ops.shape(images)[0], self.num_domains),
            onehot_indicator(target_domains, self.num_domains),
        )
        features = self._encode(images, indicator, training)
        # Soft-mask examples first (stable), then the rest; the inverse permutation restores the order.
        order = tf.argsort(tf.cast(use_soft_mask[:, 0], tf.int32), direction="DESCENDING", stable=True)
        num_soft = tf.reduce_sum(tf.cast(use_soft_mask, tf.int32))
        sorted_features, sorted_images = tf.nest.map_structure(lambda f: tf.gather(f, order), (features, images))
        style_start = tf.minimum(num_soft, tf.shape(order)[0] - 1)
        soft_part = tf.nest.map_structure(lambda f: f[:tf.maximum(num_soft, 1)], (sorted_features, sorted_images))
        style_part = tf.nest.map_structure(lambda f: f[style_start:], (sorted_features, sorted_images))
        soft = self._decode(self.soft_mask_branch, *soft_part, training)
        style = self._decode(self.style_branch, *style_part, training)
        mixed = tf.concat([soft[:num_soft], style[num_soft - style_start:]], axis=0)
        return tf.gather(mixed, tf.argsort(order))

    def get_config(self):
        return {
            "num_domains": self.num_domains,
            "image_size": list(self.image_size),
            "base_filters": self.base_filters,
            "num_res_blocks": self.num_res_blocks,
            "upsample": self.upsample,
            "skips": self.skips,
            "attention": self.attention,
            "keep_bias": self.keep_bias,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
