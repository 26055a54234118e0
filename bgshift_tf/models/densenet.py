"""DenseNet trunks (BN-ReLU-conv, growth k, compression 0.5) with `keras.applications` layer names.

One builder serves both trunks used by the re-ID models:

- `densenet121`: blocks (6, 12, 24, 16), growth 32, 64 stem filters. Same layers, names, creation order
  and parameter count (7,037,504 without top) as `keras.applications.DenseNet121(include_top=False)`, so
  the Keras ImageNet weight file loads into it unchanged.
- `densenet_small`: blocks (2, 2, 2, 2), same growth and stem: the same structure with fewer layers, for
  tests and the demo.

Feature taps (SPEC §3) are found by layer name: `pool1`, `pool2_pool`, `pool3_pool`, `pool4_pool` and the
final `relu`. For a [B, H, W, 3] input they have spatial sizes H/4, H/8, H/16, H/32 (and H/32 for
`relu`), so H and W must be multiples of 32.
"""

import os

import keras

TAP_LAYER_NAMES = ("pool1", "pool2_pool", "pool3_pool", "pool4_pool", "relu")
IMAGENET_WEIGHTS_FILE = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
_BN_EPSILON = 1.001e-5


def backbone_blocks(backbone):
    """Dense-block sizes of a named trunk: "densenet121" -> (6, 12, 24, 16), "densenet_small" -> (2, 2, 2, 2)."""
    if backbone == "densenet121":
        return (6, 12, 24, 16)
    if backbone == "densenet_small":
        return (2, 2, 2, 2)
    raise ValueError(
        f'`backbone` must be "densenet121" or "densenet_small". Received: backbone={backbone!r}'
    )


def apply_conv_block(x, growth_rate, name):
    """One dense layer: BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concatenated to its input (+k channels)."""
    y = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_0_bn")(x)
    y = keras.layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = keras.layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def apply_dense_block(x, num_layers, growth_rate, name):
    """`num_layers` dense layers; adds num_layers * growth_rate channels, keeps the spatial size."""
    for i in range(num_layers):
        x = apply_conv_block(x, growth_rate, name=f"{name}_block{i + 1}")
    return x


def apply_transition_block(x, compression, name):
    """BN-ReLU-Conv1x1 (channels * compression) then 2x2 average pooling (halves H and W)."""
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Conv2D(int(x.shape[-1] * compression), 1, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def build_densenet(
    blocks=(6, 12, 24, 16),
    growth_rate=32,
    stem_filters=64,
    compression=0.5,
    input_shape=(256, 128, 3),
    name="densenet121",
):
    """Builds a DenseNet trunk without top as a functional `keras.Model`.

    Args:
      blocks: four ints, dense layers per block.
      growth_rate: channels added by each dense layer.
      stem_filters: filters of the 7x7 stride-2 stem convolution.
      compression: channel factor of the transition blocks.
      input_shape: (H, W, 3), H and W multiples of 32.
      name: model name.

    Returns:
      A model mapping float32 [B, H, W, 3] to the final ReLU map [B, H/32, W/32, C]
      (C = 1024 for DenseNet-121).
    """
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"`blocks` must be four positive ints. Received: blocks={blocks}")
    height, width, channels = input_shape
    if height % 32 or width % 32 or channels != 3:
        raise ValueError(
            "`input_shape` must be (H, W, 3) with H and W multiples of 32 (five 2x downsamplings). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    inputs = keras.Input(shape=tuple(input_shape), name=f"{name}_input")
    x = keras.layers.ZeroPadding2D(padding=3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(stem_filters, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for index, num_layers in enumerate(blocks):
        x = apply_dense_block(x, num_layers, growth_rate, name=f"conv{index + 2}")
        if index < 3:
            x = apply_transition_block(x, compression, name=f"pool{index + 2}")
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    return keras.Model(inputs, x, name=name)


def build_backbone(backbone, input_shape=(256, 128, 3), weights=None, name=None):
    """A named trunk ("densenet121" | "densenet_small") with optional weights (see `load_backbone_weights`).

    The weight file is resolved before anything is built, so a missing file fails fast.
    """
    path = resolve_weights_path(weights, backbone=backbone)
    model = build_densenet(
        blocks=backbone_blocks(backbone), input_shape=input_shape, name=name or backbone
    )
    return load_backbone_weights(model, path, backbone=backbone)


def tap_model(trunk, name=None):
    """Wraps a trunk so it returns the five taps [pool1, pool2_pool, pool3_pool, pool4_pool, relu]."""
    outputs = [trunk.get_layer(layer_name).output for layer_name in TAP_LAYER_NAMES]
    return keras.Model(trunk.input, outputs, name=name or f"{trunk.name}_taps")


def resolve_weights_path(weights, backbone="densenet121"):
    """Maps `weights` ("imagenet" | "none" | None | PATH) to a local file path or None.

    "imagenet" never downloads (this project runs offline): it looks for the Keras cache file
    `$KERAS_HOME/models/` (default `~/.keras/models/`) + IMAGENET_WEIGHTS_FILE and fails fast if absent.
    """
    if weights is None or weights == "none":
        return None
    if weights == "imagenet":
        if backbone != "densenet121":
            raise ValueError(
                f'ImageNet weights exist only for backbone="densenet121". Received: backbone={backbone!r}'
            )
        keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        path = os.path.join(keras_home, "models", IMAGENET_WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"--backbone_weights=imagenet: no local ImageNet weights at {path} and no downloads are "
                f"made. Put {IMAGENET_WEIGHTS_FILE} (from keras.applications, DenseNet121 notop) there, "
                "or pass --backbone_weights=PATH to the file, or --backbone_weights=none."
            )
        return path
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f'--backbone_weights: file not found: {weights!r} (expected "imagenet", "none" or a .h5 path)'
        )
    return weights


def load_backbone_weights(model, weights, backbone="densenet121"):
    """Loads trunk weights in place; `weights` as in `resolve_weights_path`.

    Weight files are Keras legacy .h5 (the keras.applications format), matched by the order of the layers
    with weights, which `build_densenet` creates in the same order as keras.applications.
    """
    path = resolve_weights_path(weights, backbone=backbone)
    if path is not None:
        model.load_weights(path)
    return model
