"""Building blocks shared by the SBSGAN generator: instance norm, conv blocks, residual block, attention blend.

Blocks are small functions on Keras tensors that name every layer they create (`name=f"{name}_conv"`), so
weights stay readable and loadable by name. Convolutions that feed a norm have no bias (the norm's beta
replaces it). Instance norm (`InstanceNormalization`) computes its statistics per image and per channel at
training AND inference time (there are no running statistics), as in StarGAN.
"""

import keras
import tensorflow as tf

INSTANCE_NORM_EPSILON = 1e-5


def _normalize(x, gamma, beta, epsilon):
    """(y, centered, rstd, scale) of y = (x - mean) * rsqrt(var + eps) * gamma + beta over H, W."""
    mean = tf.reduce_mean(x, [1, 2], keepdims=True)
    centered = x - mean
    rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), [1, 2], keepdims=True) + epsilon)
    scale = rstd * gamma
    return centered * scale + beta, centered, rstd, scale


def _normalize_with_gradient(x, gamma, beta, epsilon):
    """`_normalize`'s y with its analytic gradient (first order only): dx = scale * (dy - mean(dy) - xhat *
    mean(dy * xhat)) per image and channel, instead of autodiff through the moments' broadcasts (the Tile /
    Mul chains of the profile). Measured gain: BUILD_NOTES ("Instance norm with an analytic gradient")."""

    @tf.custom_gradient
    def forward(x, gamma, beta):
        y, centered, rstd, scale = _normalize(x, gamma, beta, epsilon)

        def grad(dy):
            xhat = centered * rstd
            sum_dy = tf.reduce_sum(dy, [1, 2], keepdims=True)
            sum_dy_xhat = tf.reduce_sum(dy * xhat, [1, 2], keepdims=True)
            count = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], x.dtype)
            dx = scale * (dy - (sum_dy + xhat * sum_dy_xhat) / count)
            return dx, tf.reduce_sum(sum_dy_xhat, [0, 1, 2]), tf.reduce_sum(sum_dy, [0, 1, 2])

        return y, grad

    return forward(x, gamma, beta)


@keras.saving.register_keras_serializable(package="bgshift_tf")
class InstanceNormalization(keras.layers.Layer):
    """Affine instance normalisation of NHWC tensors: per image and channel over H and W, epsilon 1e-5,
    weights `gamma` (ones) and `beta` (zeros) of shape [C] (the names and shapes of Keras'
    `GroupNormalization(groups=-1)`, which it replaces: its checkpoints restore). Computed in float32
    (bf16 / fp16 inputs are cast up, the output cast back). With `training=True` the gradient is the
    analytic one (`_normalize_with_gradient`; its speed against Keras' autodiff: `python -m bgshift_tf.bench
    --only=instance_norm`, figures in BUILD_NOTES); at inference the plain ops run, so exported graphs hold
    no custom-gradient ops (and, unlike GroupNormalization, no reshape with a runtime shape)."""

    def __init__(self, epsilon=INSTANCE_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name}: InstanceNormalization needs [B, H, W, C] inputs with a known C. "
                             f"Received: input_shape={input_shape}")
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs, training=False):
        x = tf.cast(inputs, tf.float32)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if training:
            y = _normalize_with_gradient(x, gamma, beta, self.epsilon)
        else:
            y = _normalize(x, gamma, beta, self.epsilon)[0]
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def instance_norm(name):
    """Affine instance normalisation (per image, per channel, epsilon 1e-5) for NHWC tensors."""
    return InstanceNormalization(INSTANCE_NORM_EPSILON, name=name)


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


@keras.saving.register_keras_serializable(package="bgshift_tf")
class NearestUpsample2x(keras.layers.Layer):
    """Nearest-neighbour x2 upsampling, [B,H,W,C] -> [B,2H,2W,C], the same values as
    `UpSampling2D(2, interpolation="nearest")`, built from concatenations and reshapes: each pixel's channels
    doubled then folded into two columns, each row doubled then folded into two rows. TFLite's XNNPACK
    delegate takes those ops but not RESIZE_NEAREST_NEIGHBOR, which split a nearest-upsampling generator into
    5 delegate partitions with CPU kernels between them (BUILD_NOTES.md, "Export")."""

    interpolation = "nearest"  # as UpSampling2D names its mode

    def call(self, x):
        dynamic = tf.shape(x)
        batch, height, width = dynamic[0], x.shape[1] or dynamic[1], x.shape[2] or dynamic[2]
        channels = x.shape[3]
        columns = tf.reshape(tf.concat([x, x], axis=-1), [batch, height, 2 * width, channels])
        return tf.reshape(tf.concat([columns, columns], axis=2), [batch, 2 * height, 2 * width, channels])

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, None if height is None else 2 * height, None if width is None else 2 * width, channels)

    def get_config(self):
        return super().get_config()


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
        if mode == "nearest":
            x = NearestUpsample2x(name=f"{name}_resize")(x)
        else:
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


@keras.saving.register_keras_serializable(package="bgshift_tf")
class AttentionBlend(keras.layers.Layer):
    """An attention-mask output (GANimation, Pumarola et al. 2018): [content logits [B,H,W,3], keep logits
    [B,H,W,1], image [B,H,W,3]] -> keep * image + (1 - keep) * tanh(content) with keep = sigmoid(keep logits),
    float32 in [-1, 1].

    The decoder then only has to say where to keep the input and what to paint elsewhere, instead of
    re-drawing every pixel through the downsampled trunk. Content and keep logits come from two convs, not
    one sliced 4-channel conv: a channel slice splits TFLite's XNNPACK graph into several partitions. No weights."""

    def call(self, inputs):
        content, keep, image = (tf.cast(t, tf.float32) for t in inputs)
        if content.shape[-1] != 3 or keep.shape[-1] != 1 or image.shape[-1] != 3:
            raise ValueError(f"{self.name}: AttentionBlend needs [content with 3 channels, keep with 1, image with "
                             f"3]. Received: {content.shape}, {keep.shape}, {image.shape}")
        keep = tf.sigmoid(keep)
        return keep * image + (1.0 - keep) * tf.tanh(content)

    def compute_output_shape(self, input_shape):
        return input_shape[2]
