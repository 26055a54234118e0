"""Tests for bgshift_tf.models.layers: instance norm and the residual block."""

import keras
import numpy as np

from bgshift_tf.models.layers import apply_residual_block, instance_norm


def test_instance_norm_normalises_each_image_and_channel_separately():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(2, 4, 4, 3)).astype("float32")
    x[1] *= 10.0
    layer = instance_norm("norm")
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-4)


def test_instance_norm_uses_per_image_statistics_at_inference():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(1, 4, 4, 2)).astype("float32")
    b = rng.normal(5.0, 3.0, size=(1, 4, 4, 2)).astype("float32")
    layer = instance_norm("norm")
    alone = keras.ops.convert_to_numpy(layer(a, training=False))
    together = keras.ops.convert_to_numpy(layer(np.concatenate([a, b]), training=False))
    np.testing.assert_allclose(together[:1], alone, atol=1e-5)
    assert not layer.non_trainable_variables  # no running statistics
    assert len(layer.trainable_variables) == 2  # affine gamma and beta


def test_residual_block_is_identity_plus_residual_and_keeps_shape():
    inputs = keras.Input((8, 4, 6))
    block = keras.Model(inputs, apply_residual_block(inputs, name="res"))
    x = np.random.default_rng(2).normal(size=(2, 8, 4, 6)).astype("float32")
    # Zero gamma/beta of the last norm: the residual vanishes and the block is the identity.
    last_norm = block.get_layer("res_2_norm")
    last_norm.set_weights([np.zeros(6, "float32"), np.zeros(6, "float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), x, atol=1e-6)
    names = [layer.name for layer in block.layers]
    assert {"res_1_conv", "res_1_norm", "res_2_conv", "res_2_norm", "res_add"} <= set(names)
    assert not block.get_layer("res_1_conv").use_bias
