"""Re-ID networks: the IDE baseline and DA-2S (paper §4, SPEC §3).

IDE:   image -> DenseNet trunk -> GAP -> feature -> FC1 512, BN, ReLU, dropout 0.5 -> FC2 N (logits).
DA-2S: (soft-mask image, style-transferred/original image) -> two unshared DenseNet streams. At the
       taps after pool1 and after transition blocks 1-3, Inter-Stream Densely Connected (ISDC) modules
       O_n = ReLU(BN(Conv3x3_stride_n([S1_n, S2_n] + y * O_{n-1}))), y = 0 for n = 1,
       where [.] is channel concatenation and + is element-wise summation (paper eq. 7). The final maps
       of both streams are concatenated, re-weighted by an SE block (reduction 16) and summed with O_4;
       GAP gives the test feature (2,048-d for DenseNet-121) and the IDE head gives the logits.
       The ISDC-SE variant of the paper's Table 3 re-weights every O_n by its own SE block.

For DenseNet-121 at 256x128 the shapes are (per stream / ISDC output):
  n=1: taps 64x32x64  -> concat 64x32x128  -> O_1 32x16x256  (stride 2)
  n=2: taps 32x16x128 -> concat 32x16x256 (+ O_1) -> O_2 16x8x512
  n=3: taps 16x8x256  -> concat 16x8x512  (+ O_2) -> O_3 8x4x1024
  n=4: taps 8x4x512   -> concat 8x4x1024  (+ O_3) -> O_4 8x4x2048 (stride 1)
  final maps 8x4x1024 each -> concat 8x4x2048 -> SE -> + O_4 -> GAP -> 2,048.
ISDC widths are derived from the trunk's tap widths (O_n has the width of the next concatenated tap, O_4
the width of the concatenated final maps), which gives 256/512/1024/2048 for DenseNet-121 and a scaled
set for the small DenseNet.

Inputs are float32 images in [-1, 1], [B, H, W, 3]; the models convert them to the ImageNet
mean/std standardisation the Keras DenseNet weights expect. Under a mixed precision policy
(`core.precision`) the trunks compute in bf16/fp16; batch-norm statistics, the GAP feature and the
logits stay float32.
"""

import keras
from keras import ops

from bgshift_tf.models import densenet

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_standardize(images):
    """[-1, 1] [B, H, W, 3] -> ImageNet ("torch" mode) standardised [B, H, W, 3], in the images' dtype."""
    unit = (images + 1.0) * 0.5
    mean, std = (ops.convert_to_tensor(c, dtype=unit.dtype) for c in (_IMAGENET_MEAN, _IMAGENET_STD))
    return (unit - mean) / std


@keras.saving.register_keras_serializable(package="bgshift_tf")
class ClassifierHead(keras.layers.Layer):
    """FC1 (hidden_units), BN, ReLU, dropout, FC2 (num_classes): [B, D] feature -> [B, N] logits."""

    def __init__(self, num_classes, hidden_units=512, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)
        # === Layers ===
        self.fc1 = keras.layers.Dense(self.hidden_units, name=f"{self.name}_fc1")
        self.bn = keras.layers.BatchNormalization(name=f"{self.name}_bn")
        self.relu = keras.layers.ReLU(name=f"{self.name}_relu")
        self.drop = keras.layers.Dropout(self.dropout, name=f"{self.name}_dropout")
        # Logits in float32 under any precision policy: the softmax cross-entropy reads them.
        self.fc2 = keras.layers.Dense(self.num_classes, dtype="float32", name=f"{self.name}_fc2")

    def call(self, features, training=False):
        x = self.relu(self.bn(self.fc1(features), training=training))
        return self.fc2(self.drop(x, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, hidden_units=self.hidden_units, dropout=self.dropout
        )
        return config


@keras.saving.register_keras_serializable(package="bgshift_tf")
class SqueezeExcitation(keras.layers.Layer):
    """SE block (Hu et al.): channel re-weighting x * sigmoid(FC(ReLU(FC(GAP(x))))), [B,H,W,C] -> same."""

    def __init__(self, reduction=16, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"`reduction` must be >= 1. Received: reduction={reduction}")
        self.reduction = int(reduction)
        self.pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{self.name}_gap")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.squeeze = keras.layers.Dense(
            max(1, channels // self.reduction), activation="relu", name=f"{self.name}_squeeze"
        )
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name=f"{self.name}_excite")
        self.squeeze.build((None, 1, 1, channels))
        self.excite.build((None, 1, 1, max(1, channels // self.reduction)))

    def call(self, inputs):
        return inputs * self.excite(self.squeeze(self.pool(inputs)))

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction)
        return config


@keras.saving.register_keras_serializable(package="bgshift_tf")
class ISDCBlock(keras.layers.Layer):
    """One ISDC module: ReLU(BN(Conv3x3(x))), `filters` channels, `strides` 1 or 2, 'same' padding."""

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.conv = keras.layers.Conv2D(
            self.filters, 3, strides=self.strides, padding="same", use_bias=False,
            name=f"{self.name}_conv",
        )
        self.bn = keras.layers.BatchNormalization(name=f"{self.name}_bn")
        self.relu = keras.layers.ReLU(name=f"{self.name}_relu")

    def call(self, inputs, training=False):
        return self.relu(self.bn(self.conv(inputs), training=training))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


class _ReIDNetwork(keras.Model):
    """What IDE and DA-2S share: the constructor arguments every re-ID model takes, the GAP feature of
    `fused_maps`, the IDE head on it, and `get_config` (these arguments plus `_extra_config()`).

    Subclasses create their trunk layers, then call `_add_head()`, and define `fused_maps`.
    """

    def __init__(self, num_classes, backbone, input_shape, weights, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.image_shape = tuple(int(d) for d in input_shape)
        self.weights_source = weights

    def _add_head(self, feature_dim):
        self.pool = keras.layers.GlobalAveragePooling2D(dtype="float32", name=f"{self.name}_gap")  # float32 feature
        self.head = ClassifierHead(self.num_classes, name=f"{self.name}_head")
        self.feature_dim = int(feature_dim)

    def embed(self, inputs, training=False):
        """Images in [-1, 1] (see the subclass) -> feature float32 [B, feature_dim]."""
        return self.pool(self.fused_maps(inputs, training=training))

    def call(self, inputs, training=False):
        """Images in [-1, 1] (see the subclass) -> logits float32 [B, num_classes]."""
        return self.head(self.embed(inputs, training=training), training=training)

    def _extra_config(self):
        return {}

    def get_config(self):
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "backbone": self.backbone,
            "input_shape": list(self.image_shape),
            "weights": self.weights_source,
            **self._extra_config(),
        }


@keras.saving.register_keras_serializable(package="bgshift_tf")
class IDE(_ReIDNetwork):
    """IDE baseline: one DenseNet trunk, GAP feature [B, C] (1,024 for DenseNet-121), IDE head -> [B, N].

    Args:
      num_classes: training identities N.
      backbone: "densenet121" | "densenet_small".
      input_shape: (H, W, 3), H and W multiples of 32.
      weights: trunk weights, "imagenet" | "none" | None | path (see `densenet.resolve_weights_path`).
    """

    def __init__(
        self, num_classes, backbone="densenet121", input_shape=(256, 128, 3), weights=None,
        name="ide", **kwargs,
    ):
        super().__init__(num_classes, backbone, input_shape, weights, name=name, **kwargs)
        # === Layers ===
        self.trunk = densenet.build_backbone(
            backbone, self.image_shape, weights=weights, name=f"{name}_{backbone}"
        )
        self._add_head(self.trunk.output.shape[-1])

    def fused_maps(self, images, training=False):
        """float32 [B, H, W, 3] in [-1, 1] -> trunk maps [B, H/32, W/32, feature_dim]."""
        return self.trunk(imagenet_standardize(images), training=training)


@keras.saving.register_keras_serializable(package="bgshift_tf")
class DA2S(_ReIDNetwork):
    """Densely Associated 2-Stream network (paper §4), with the ablation switches of its Table 3.

    use_se=False, use_isdc=False: baseline two-stream (GAP of the concatenated final maps).
    use_se=True,  use_isdc=False: + SE block on the concatenated final maps.
    use_se=True,  use_isdc=True:  DA-2S (+ ISDC modules, O_4 summed with the SE output).
    isdc_se=True (with use_isdc): "ISDC-SE", an SE block (reduction `se_reduction`) re-weighting every ISDC
        output O_n before it feeds O_{n+1} and the final sum (paper Table 3, "+SEBlock+ISDC-SE").
    `embed` and `call` take (stream1_images, stream2_images), each float32 [B, H, W, 3] in [-1, 1].

    Args:
      num_classes: training identities N.
      backbone: "densenet121" | "densenet_small" (both streams; no weight sharing).
      input_shape: (H, W, 3) of each stream, H and W multiples of 32.
      weights: trunk weights for both streams, "imagenet" | "none" | None | path.
      use_se, use_isdc, isdc_se: ablation switches (see above).
      se_reduction: SE reduction ratio.
    """

    def __init__(
        self, num_classes, backbone="densenet121", input_shape=(256, 128, 3), weights=None,
        use_se=True, use_isdc=True, se_reduction=16, isdc_se=False, name="da2s", **kwargs,
    ):
        super().__init__(num_classes, backbone, input_shape, weights, name=name, **kwargs)
        if isdc_se and not use_isdc:
            raise ValueError(
                f"`isdc_se` re-weights the ISDC outputs and needs `use_isdc`. Received: isdc_se={isdc_se}, "
                f"use_isdc={use_isdc}"
            )
        self.use_se = bool(use_se)
        self.use_isdc = bool(use_isdc)
        self.isdc_se = bool(isdc_se)
        self.se_reduction = int(se_reduction)
        # === Layers ===
        self.stream1, self.stream2 = (
            densenet.tap_model(
                densenet.build_backbone(
                    backbone, self.image_shape, weights=weights, name=f"{name}_stream{i}_{backbone}"
                ),
                name=f"{name}_stream{i}",
            )
            for i in (1, 2)
        )
        # Concatenated widths of the two streams at the five taps (pool1 .. pool4_pool, final relu).
        pair_widths = [2 * int(t.shape[-1]) for t in self.stream1.outputs]
        self.isdc_blocks = (
            [
                ISDCBlock(pair_widths[n + 1], strides=2 if n < 3 else 1, name=f"{name}_isdc{n + 1}")
                for n in range(4)
            ]
            if self.use_isdc
            else []
        )
        # Each block is also its own attribute: tf.train.Checkpoint does not follow Keras' tracked list, so
        # without these a restored DA-2S kept freshly initialised ISDC weights without a word.
        for n, block in enumerate(self.isdc_blocks):
            setattr(self, f"isdc{n + 1}", block)
        self.isdc_se_blocks = [
            SqueezeExcitation(self.se_reduction, name=f"{name}_isdc{n + 1}_se")
            for n in range(len(self.isdc_blocks) if self.isdc_se else 0)
        ]
        for n, block in enumerate(self.isdc_se_blocks):
            setattr(self, f"isdc{n + 1}_se", block)
        self.se = (
            SqueezeExcitation(self.se_reduction, name=f"{name}_se") if self.use_se else None
        )
        self._add_head(pair_widths[-1])

    def features(self, inputs, training=False):
        """All intermediate maps, for inspection and for `embed`/`call`.

        Args:
          inputs: (stream1_images, stream2_images), each float32 [B, H, W, 3] in [-1, 1].

        Returns:
          dict: "stream1_taps", "stream2_taps" (five maps each), "isdc" (O_1..O_4, empty without ISDC;
          SE-re-weighted with `isdc_se`),
          "fused" [B, H/32, W/32, feature_dim] and "feature" [B, feature_dim].
        """
        stream1_images, stream2_images = inputs
        taps1 = self.stream1(imagenet_standardize(stream1_images), training=training)
        taps2 = self.stream2(imagenet_standardize(stream2_images), training=training)
        isdc_outputs = []
        for n, block in enumerate(self.isdc_blocks):
            x = ops.concatenate([taps1[n], taps2[n]], axis=-1)
            if n > 0:
                x = x + isdc_outputs[-1]
            x = block(x, training=training)
            isdc_outputs.append(self.isdc_se_blocks[n](x) if self.isdc_se_blocks else x)
        fused = ops.concatenate([taps1[-1], taps2[-1]], axis=-1)
        if self.se is not None:
            fused = self.se(fused)
        if isdc_outputs:
            fused = fused + isdc_outputs[-1]
        return {
            "stream1_taps": list(taps1),
            "stream2_taps": list(taps2),
            "isdc": isdc_outputs,
            "fused": fused,
            "feature": self.pool(fused),
        }

    def fused_maps(self, inputs, training=False):
        """(stream1, stream2) -> the SE-weighted final maps + O_4, [B, H/32, W/32, feature_dim]."""
        return self.features(inputs, training=training)["fused"]

    def _extra_config(self):
        return {"use_se": self.use_se, "use_isdc": self.use_isdc, "se_reduction": self.se_reduction,
                "isdc_se": self.isdc_se}
