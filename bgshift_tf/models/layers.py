"""Building blocks shared by the SBSGAN generator: instance norm, conv blocks, residual block.

Blocks are small functions on Keras tensors that name every layer they create (`name=f"{name}_conv"`), so
weights stay readable and loadable by name. Convolutions that feed a norm have no bias (the norm's beta
replaces it). Instance norm is `GroupNormalization(groups=-1)`: statistics are computed per image and per
channel at training AND inference time (there are no running statistics), as in StarGAN.
"""

import keras

INSTANCE_NORM_EPSILON = 1e-5


def instance_norm(name):
    """Affine instance normalisation (per image, per channel, epsilon 1e-5) for NHWC tensors."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=INSTANCE_NORM_EPSILON, name=name)


def apply_conv_norm_relu(x, filters, kernel_size, strides=1, name="conv_block"):
    """Conv (no bias, "same" padding) -> instance norm -> ReLU.

    Args:
        x: float32 [B, H, W, C].
        filters, kernel_size, strides: of the convolution; `strides=2` halves H and W (H, W even).
        name: prefix of the three layer names.

    Returns:
        float32 [B, H / strides, W / strides, filters], values >= 0.
    """
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = instance_norm(f"{name}_norm")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


# How a decoder doubles H and W: the paper's 4x4 stride-2 transposed conv, or a resize followed by a 3x3
# conv (no uneven kernel overlap, hence no checkerboard; Odena et al., Distill 2016).
UPSAMPLE_MODES = ("transposed", "nearest", "bilinear")


def apply_upsample_norm_relu(x, filters, mode="transposed", name="up_block"):
    """Upsample x2 -> instance norm -> ReLU: [B,H,W,C] -> [B,2H,2W,filters].

    `mode` (UPSAMPLE_MODES): "transposed" = 4x4 stride-2 transposed conv (layer `{name}_deconv`, the
    paper's); "nearest" / "bilinear" = that resize (`{name}_resize`) then a 3x3 conv (`{name}_conv`).
    Convolutions have no bias.
    """
    if mode == "transposed":
        x = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_deconv"
        )(x)
    elif mode in UPSAMPLE_MODES:
        x = keras.layers.UpSampling2D(2, interpolation=mode, name=f"{name}_resize")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        raise ValueError(f"`upsample` must be one of {UPSAMPLE_MODES}. Received: upsample={mode!r}")
    x = instance_norm(f"{name}_norm")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def apply_residual_block(x, name="res_block"):
    """x + IN(conv3x3(ReLU(IN(conv3x3(x))))), keeping shape [B, H, W, C] (C = channels of x)."""
    filters = x.shape[-1]
    y = apply_conv_norm_relu(x, filters, 3, name=f"{name}_1")
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = instance_norm(f"{name}_2_norm")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])
