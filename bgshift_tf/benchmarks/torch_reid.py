"""PyTorch twins of the re-ID networks (`models.reid.IDE`, `models.reid.DA2S` on `models.densenet` trunks) and
of `training.reid.make_train_step`, for the training benchmark (`benchmarks/reid.py`).

Plain `torch.nn` (torchvision is not needed), NCHW, layer for layer what the Keras models build:
  * DenseNet trunk: 7x7/2 stem conv, BN, ReLU, 3x3/2 max pool (Keras zero-pads after a ReLU, which equals
    torch's -inf padding), dense layers BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) concatenated to their input,
    transitions BN-ReLU-Conv1x1(x0.5)-AvgPool2, final BN-ReLU; BN epsilon 1.001e-5 as keras.applications.
    Modules sit in a `ModuleDict` keyed by the Keras layer names, so weights copy by name.
  * the IDE head: FC1 512, BN, ReLU, dropout 0.5, FC2 N (Keras' default BN epsilon 1e-3, momentum 0.99).
  * DA-2S: two unshared trunks, ISDC modules ReLU(BN(Conv3x3_s([S1_n, S2_n] + O_{n-1}))) on the taps (a
    stride-2 "same" conv in TF pads 0 before and 1 after, reproduced with `F.pad`), the SE block (reduction
    16) on the concatenated final maps, + O_4, GAP, the IDE head.
The train step is the trainer's: summed softmax cross-entropy / batch size on float32 logits, backward, SGD
momentum 0.9 (torch's `b = m b + g; w -= lr b` equals Keras' `v = m v - lr g; w += v` at a constant rate).
Parameter counts equal the Keras models' (`count_parameters`; BN running statistics count as Keras'
non-trainable weights), and `copy_keras_weights` loads a Keras model's weights into its twin.
"""

import keras
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bgshift_tf.models import densenet
from bgshift_tf.models.reid import DA2S

DENSENET_BN_EPSILON = 1.001e-5  # models/densenet.py, as keras.applications
KERAS_BN_EPSILON = 1e-3  # keras.layers.BatchNormalization's default (IDE head, ISDC)
KERAS_BN_MOMENTUM = 0.01  # torch's running-average weight of the new batch = 1 - Keras' momentum 0.99
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _keras_bn(channels, epsilon=KERAS_BN_EPSILON, dims=2):
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=epsilon, momentum=KERAS_BN_MOMENTUM)


def imagenet_standardize(images):
    """[-1, 1] NCHW -> ImageNet-standardised NCHW (as `models.reid.imagenet_standardize`)."""
    mean = torch.tensor(_IMAGENET_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1.0) * 0.5 - mean) / std


class DenseNetTwin(nn.Module):
    """`densenet.build_densenet` in torch: NCHW images -> the five taps (pool1, pool2..4_pool, final relu)."""

    def __init__(self, blocks, growth_rate=32, stem_filters=64, compression=0.5):
        super().__init__()
        self.blocks = tuple(int(b) for b in blocks)
        layers = {"conv1_conv": nn.Conv2d(3, stem_filters, 7, 2, 3, bias=False),
                  "conv1_bn": _keras_bn(stem_filters, DENSENET_BN_EPSILON)}
        channels, self.tap_channels = stem_filters, [stem_filters]
        for index, num_layers in enumerate(self.blocks):
            for i in range(num_layers):
                name = f"conv{index + 2}_block{i + 1}"
                layers[f"{name}_0_bn"] = _keras_bn(channels, DENSENET_BN_EPSILON)
                layers[f"{name}_1_conv"] = nn.Conv2d(channels, 4 * growth_rate, 1, bias=False)
                layers[f"{name}_1_bn"] = _keras_bn(4 * growth_rate, DENSENET_BN_EPSILON)
                layers[f"{name}_2_conv"] = nn.Conv2d(4 * growth_rate, growth_rate, 3, 1, 1, bias=False)
                channels += growth_rate
            if index < 3:
                layers[f"pool{index + 2}_bn"] = _keras_bn(channels, DENSENET_BN_EPSILON)
                layers[f"pool{index + 2}_conv"] = nn.Conv2d(channels, int(channels * compression), 1, bias=False)
                channels = int(channels * compression)
                self.tap_channels.append(channels)
        layers["bn"] = _keras_bn(channels, DENSENET_BN_EPSILON)
        self.tap_channels.append(channels)
        self.layers = nn.ModuleDict(layers)

    def forward(self, images):
        layer = self.layers
        x = F.max_pool2d(F.relu(layer["conv1_bn"](layer["conv1_conv"](images))), 3, 2, padding=1)
        taps = [x]
        for index, num_layers in enumerate(self.blocks):
            for i in range(num_layers):
                name = f"conv{index + 2}_block{i + 1}"
                y = layer[f"{name}_1_conv"](F.relu(layer[f"{name}_0_bn"](x)))
                y = layer[f"{name}_2_conv"](F.relu(layer[f"{name}_1_bn"](y)))
                x = torch.cat([x, y], dim=1)
            if index < 3:
                x = F.avg_pool2d(layer[f"pool{index + 2}_conv"](F.relu(layer[f"pool{index + 2}_bn"](x))), 2)
                taps.append(x)
        taps.append(F.relu(layer["bn"](x)))
        return taps


class ClassifierHeadTwin(nn.Module):
    """`models.reid.ClassifierHead`: FC1, BN, ReLU, dropout, FC2 (float32 logits under autocast too)."""

    def __init__(self, in_features, num_classes, hidden_units=512, dropout=0.5):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_units)
        self.bn = _keras_bn(hidden_units, dims=1)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_units, num_classes)

    def forward(self, features):
        return self.fc2(self.drop(F.relu(self.bn(self.fc1(features))))).float()


class ISDCTwin(nn.Module):
    """`models.reid.ISDCBlock`: ReLU(BN(Conv3x3)) with TF's "same" padding at stride 1 or 2."""

    def __init__(self, in_channels, filters, strides):
        super().__init__()
        self.strides = int(strides)
        self.conv = nn.Conv2d(in_channels, filters, 3, self.strides, 1 if self.strides == 1 else 0, bias=False)
        self.bn = _keras_bn(filters)

    def forward(self, x):
        if self.strides == 2:  # TF "same", even size, stride 2: no padding before, one row/column after
            x = F.pad(x, (0, 1, 0, 1))
        return F.relu(self.bn(self.conv(x)))


class SqueezeExcitationTwin(nn.Module):
    """`models.reid.SqueezeExcitation`: x * sigmoid(FC(ReLU(FC(GAP(x)))))."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.squeeze = nn.Linear(channels, max(1, channels // reduction))
        self.excite = nn.Linear(max(1, channels // reduction), channels)

    def forward(self, x):
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean(dim=(2, 3))))))
        return x * weights[:, :, None, None]


class IDETwin(nn.Module):
    """`models.reid.IDE`: images [-1, 1] NCHW -> logits [B, N]."""

    def __init__(self, num_classes, blocks, dropout=0.5):
        super().__init__()
        self.trunk = DenseNetTwin(blocks)
        self.head = ClassifierHeadTwin(self.trunk.tap_channels[-1], num_classes, dropout=dropout)

    def forward(self, images):
        return self.head(self.trunk(imagenet_standardize(images))[-1].float().mean(dim=(2, 3)))


class DA2STwin(nn.Module):
    """`models.reid.DA2S`: (stream1, stream2) images [-1, 1] NCHW -> logits [B, N]."""

    def __init__(self, num_classes, blocks, use_se=True, use_isdc=True, se_reduction=16, dropout=0.5):
        super().__init__()
        self.stream1, self.stream2 = DenseNetTwin(blocks), DenseNetTwin(blocks)
        pair_widths = [2 * c for c in self.stream1.tap_channels]
        self.isdc_blocks = nn.ModuleList(
            [ISDCTwin(pair_widths[n], pair_widths[n + 1], 2 if n < 3 else 1) for n in range(4)] if use_isdc else [])
        self.se = SqueezeExcitationTwin(pair_widths[-1], se_reduction) if use_se else None
        self.head = ClassifierHeadTwin(pair_widths[-1], num_classes, dropout=dropout)

    def forward(self, stream1_images, stream2_images):
        taps1 = self.stream1(imagenet_standardize(stream1_images))
        taps2 = self.stream2(imagenet_standardize(stream2_images))
        previous = None
        for n, block in enumerate(self.isdc_blocks):
            x = torch.cat([taps1[n], taps2[n]], dim=1)
            previous = block(x if previous is None else x + previous)
        fused = torch.cat([taps1[-1], taps2[-1]], dim=1)
        if self.se is not None:
            fused = self.se(fused)
        if previous is not None:
            fused = fused + previous
        return self.head(fused.float().mean(dim=(2, 3)))


def twin_of(model, dropout=0.5):
    """The (untrained) torch twin of a Keras IDE or DA2S, same configuration."""
    blocks = densenet.backbone_blocks(model.backbone)
    if isinstance(model, DA2S):
        return DA2STwin(model.num_classes, blocks, model.use_se, model.use_isdc, model.se_reduction, dropout)
    return IDETwin(model.num_classes, blocks, dropout)


def count_parameters(module):
    """(trainable, total) scalars of a twin; total adds BN running mean/variance (Keras' non-trainable)."""
    trainable = sum(p.numel() for p in module.parameters())
    statistics = sum(b.numel() for name, b in module.named_buffers() if name.rsplit(".", 1)[-1].startswith("running"))
    return trainable, trainable + statistics


def _copy_layer(layer, module):
    """One Keras Conv2D / Dense / BatchNormalization layer's weights -> its torch module, in place."""
    values = [np.asarray(keras.ops.convert_to_numpy(w)) for w in layer.weights]
    if isinstance(layer, keras.layers.Conv2D):
        tensors = [("weight", values[0].transpose(3, 2, 0, 1))] + ([("bias", values[1])] if len(values) > 1 else [])
    elif isinstance(layer, keras.layers.Dense):
        tensors = [("weight", values[0].T), ("bias", values[1])]
    elif isinstance(layer, keras.layers.BatchNormalization):
        tensors = list(zip(("weight", "bias", "running_mean", "running_var"), values))
    else:
        raise TypeError(f"no torch counterpart for Keras layer {layer.name!r} ({type(layer).__name__})")
    with torch.no_grad():
        for attribute, value in tensors:
            target = getattr(module, attribute)
            if tuple(target.shape) != value.shape:
                raise ValueError(f"Keras layer {layer.name!r}: {attribute} has shape {value.shape}, its torch "
                                 f"twin {tuple(target.shape)}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def copy_keras_weights(model, twin):
    """Loads a built Keras IDE / DA2S's weights into `twin` (from `twin_of(model)`); returns `twin`."""
    pairs = [(model.head.fc1, twin.head.fc1), (model.head.bn, twin.head.bn), (model.head.fc2, twin.head.fc2)]
    trunks = ([(model.stream1, twin.stream1), (model.stream2, twin.stream2)] if isinstance(model, DA2S)
              else [(model.trunk, twin.trunk)])
    for keras_trunk, torch_trunk in trunks:
        pairs += [(keras_trunk.get_layer(name), module) for name, module in torch_trunk.layers.items()]
    if isinstance(model, DA2S):
        pairs += [(layer, module) for block, twin_block in zip(model.isdc_blocks, twin.isdc_blocks)
                  for layer, module in ((block.conv, twin_block.conv), (block.bn, twin_block.bn))]
        if model.se is not None:
            pairs += [(model.se.squeeze, twin.se.squeeze), (model.se.excite, twin.se.excite)]
    for layer, module in pairs:
        _copy_layer(layer, module)
    return twin


def make_train_step(twin, optimizer, inputs, labels, batch_size, autocast):
    """`step() -> loss` of the trainer's re-ID step on fixed NCHW `inputs` (a tuple of image tensors)."""

    def step():
        # 1. Forward in training mode, under bf16 autocast when asked (logits come out float32).
        twin.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = twin(*inputs)
        # 2. Summed float32 softmax cross-entropy / batch size, as training/reid.py.
        loss = F.cross_entropy(logits.float(), labels, reduction="sum") / batch_size
        # 3. Backward and the SGD momentum update.
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step
