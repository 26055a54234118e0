"""DenseNet trunks: structure, keras.applications compatibility, weight loading and its errors."""

import keras
import numpy as np
import pytest

from bgshift_tf.models import densenet


def _hand_param_count(blocks, growth=32, stem=64):
    """Parameters of a DenseNet without top, counted by hand (BN has 4 weights per channel)."""
    total = 7 * 7 * 3 * stem + 4 * stem
    channels = stem
    for index, num_layers in enumerate(blocks):
        for _ in range(num_layers):
            total += 4 * channels + channels * 4 * growth + 4 * 4 * growth + 9 * 4 * growth * growth
            channels += growth
        if index < 3:
            total += 4 * channels + channels * (channels // 2)
            channels //= 2
    return total + 4 * channels


def _weighted_layer_names(model):
    return [layer.name for layer in model.layers if layer.weights]


@pytest.mark.slow
def test_densenet121_matches_keras_applications():
    ours = densenet.build_backbone("densenet121", (256, 128, 3))
    reference = keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(256, 128, 3)
    )
    assert ours.count_params() == reference.count_params() == 7_037_504
    assert _hand_param_count((6, 12, 24, 16)) == 7_037_504
    # Same weighted layers in the same order: the Keras ImageNet .h5 (loaded by order) fits ours.
    assert _weighted_layer_names(ours) == _weighted_layer_names(reference)
    shapes = [tuple(t.shape[1:]) for t in densenet.tap_model(ours).outputs]
    assert shapes == [(64, 32, 64), (32, 16, 128), (16, 8, 256), (8, 4, 512), (8, 4, 1024)]


def test_small_densenet_is_the_same_structure_with_fewer_layers():
    small = densenet.build_backbone("densenet_small", (64, 32, 3))
    assert small.count_params() == _hand_param_count((2, 2, 2, 2))
    names = _weighted_layer_names(small)
    # Blocks keep the DenseNet-121 naming; each block has exactly two dense layers.
    assert "conv2_block2_2_conv" in names and "conv2_block3_0_bn" not in names
    assert "conv5_block2_2_conv" in names and "pool4_conv" in names
    shapes = [tuple(t.shape[1:]) for t in densenet.tap_model(small).outputs]
    # stem 64 -> +2*32 -> /2 = 64 at every tap, final 64 + 2*32 = 128 at H/32 x W/32.
    assert shapes == [(16, 8, 64), (8, 4, 64), (4, 2, 64), (2, 1, 64), (2, 1, 128)]


@pytest.mark.parametrize("shape", [(48, 32, 3), (64, 40, 3), (64, 32, 1)])
def test_bad_input_shape_is_rejected_with_the_value(shape):
    with pytest.raises(ValueError, match=r"multiples of 32.*" + str(shape[1])):
        densenet.build_densenet(blocks=(1, 1, 1, 1), input_shape=shape)


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="densenet_tiny"):
        densenet.backbone_blocks("densenet_tiny")


def test_imagenet_offline_fails_fast_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        densenet.build_backbone("densenet121", (256, 128, 3), weights="imagenet")
    message = str(info.value)
    assert densenet.IMAGENET_WEIGHTS_FILE in message
    assert str(tmp_path / "models") in message and "--backbone_weights=PATH" in message


def test_imagenet_uses_the_keras_cache_file_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / densenet.IMAGENET_WEIGHTS_FILE
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert densenet.resolve_weights_path("imagenet") == str(cached)
    assert densenet.resolve_weights_path("none") is None
    assert densenet.resolve_weights_path(None) is None
    with pytest.raises(ValueError, match="densenet_small"):
        densenet.resolve_weights_path("imagenet", backbone="densenet_small")


def test_missing_weight_path_names_it(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        densenet.build_backbone("densenet_small", (64, 32, 3), weights=missing)


def test_weights_load_from_a_legacy_h5_path(tmp_path):
    source = densenet.build_backbone("densenet_small", (64, 32, 3), name="source")
    path = str(tmp_path / "trunk.h5")
    source.save(path)  # Keras legacy .h5, the keras.applications weight format
    keras.utils.set_random_seed(99)
    target = densenet.build_backbone("densenet_small", (64, 32, 3), weights=path, name="target")
    fresh = densenet.build_backbone("densenet_small", (64, 32, 3), name="fresh")
    kernel = "conv1_conv"
    assert not np.allclose(fresh.get_layer(kernel).kernel.numpy(), source.get_layer(kernel).kernel.numpy())
    for a, b in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
