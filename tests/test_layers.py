"""Tests for bgshift_tf.models.layers: instance norm and the residual block."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.models.layers import NearestUpsample2x, apply_residual_block, instance_norm


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


def _pair_of_norms(channels):
    ours = instance_norm("norm")
    keras_norm = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name="norm")
    rng = np.random.default_rng(3)
    ours.build((None, 6, 4, channels))
    keras_norm.build((None, 6, 4, channels))
    weights = [rng.normal(1.0, 0.3, channels).astype("float32"), rng.normal(0.0, 0.3, channels).astype("float32")]
    ours.set_weights(weights)
    keras_norm.set_weights(weights)
    return ours, keras_norm


def test_instance_norm_equals_keras_group_norm_forward_and_backward():
    ours, keras_norm = _pair_of_norms(5)
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(2.0, 3.0, (3, 6, 4, 5)), tf.float32)
    dy = tf.constant(rng.normal(size=(3, 6, 4, 5)), tf.float32)
    results = {}
    for name, layer in (("ours", ours), ("keras", keras_norm)):
        for training in (True, False):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
                loss = tf.reduce_sum(y * dy)
            results[name, training] = [y.numpy()] + [g.numpy() for g in
                                                     tape.gradient(loss, [x, *layer.trainable_weights])]
    # The analytic gradient (training) and autodiff (inference) of ours both equal Keras' autodiff.
    for training in (True, False):
        for got, want in zip(results["ours", training], results["keras", training]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(results["ours", True][1]).max() > 1e-3  # the gradient compared is not trivially zero


def test_instance_norm_restores_group_norm_checkpoints_and_round_trips_its_config(tmp_path):
    ours, keras_norm = _pair_of_norms(4)
    keras_model = keras.Sequential([keras.Input((6, 4, 4)), keras_norm])
    path = tf.train.Checkpoint(model=keras_model).write(str(tmp_path / "ckpt"))
    fresh = instance_norm("norm")
    our_model = keras.Sequential([keras.Input((6, 4, 4)), fresh])
    tf.train.Checkpoint(model=our_model).read(path).assert_consumed()
    for got, want in zip(fresh.get_weights(), keras_norm.get_weights()):
        np.testing.assert_array_equal(got, want)
    clone = type(fresh).from_config(fresh.get_config())
    assert clone.epsilon == 1e-5 and clone.name == "norm"
    with pytest.raises(ValueError, match=r"bad: InstanceNormalization needs \[B, H, W, C\]"):
        instance_norm("bad").build((None, 8))


def test_instance_norm_benchmark_quick_run_compares_the_same_maths():
    from bgshift_tf.benchmarks import instance_norm as bench

    result = bench.run(quick=True)
    assert result["norm_only"]["num_norms"] == 9  # stem, 2 down, 2 in its 1 residual block, 2 up x 2 branches
    assert result["dg_step"]["first_step_max_loss_diff"] < 1e-4
    assert all(rate > 0 for rate in result["dg_step"]["images_per_s"].values())
    assert result["separate_keras"]["images_per_s"] > 0 and result["dg_step"]["ratio_vs_separate_keras"] > 0


def test_nearest_upsample_equals_keras_nearest_resize_with_its_gradient_and_config():
    """The concat/reshape upsampling gives UpSampling2D(nearest)'s values and input gradient, with static or
    unknown H and W, and round-trips its config."""
    x = tf.random.normal([2, 3, 5, 4], seed=1)
    layer, reference = NearestUpsample2x(), keras.layers.UpSampling2D(2, interpolation="nearest")
    weights = tf.random.normal([2, 6, 10, 4], seed=2)  # a loss that weighs every output pixel differently
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = layer(x), reference(x)
        loss_ours, loss_theirs = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
    assert ours.shape == (2, 6, 10, 4)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_allclose(tape.gradient(loss_ours, x).numpy(), tape.gradient(loss_theirs, x).numpy(), atol=1e-5)
    unknown = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 4])])
    np.testing.assert_array_equal(unknown(x).numpy(), theirs.numpy())
    assert isinstance(NearestUpsample2x.from_config(layer.get_config()), NearestUpsample2x)
