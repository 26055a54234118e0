"""Tests for bgshift_tf.models.generator (tiny sizes: 32x16 images, width 8, one residual block)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.data import variants
from bgshift_tf.models.generator import BRANCHES, Generator, onehot_indicator, uniform_indicator
from bgshift_tf.models.layers import apply_upsample_norm_relu

K = 3
SIZE = (32, 16)


def _generator():
    return Generator(num_domains=K, image_size=SIZE, base_filters=8, num_res_blocks=1)


def _images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(batch, *SIZE, 3)).astype("float32")


def test_indicators():
    np.testing.assert_allclose(uniform_indicator(2, 4), np.full((2, 4), 0.25))
    np.testing.assert_array_equal(onehot_indicator(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_indicator_is_tiled_over_the_image():
    g = _generator()
    stem = g.encoder.get_layer("encoder_stem_conv")
    assert stem.kernel.shape == (7, 7, 3 + K, 8)
    x = _images()
    a = g.style_transfer(x, np.array([0, 1]))
    b = g.style_transfer(x, np.array([1, 1]))
    assert not np.allclose(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_both_branches_have_image_shaped_outputs_in_range():
    g = _generator()
    x = _images(3)
    soft = g.soft_mask(x).numpy()
    style = g.style_transfer(x, np.array([0, 1, 2])).numpy()
    assert soft.shape == style.shape == (3, *SIZE, 3)
    assert np.abs(soft).max() <= 1.0 and np.abs(style).max() <= 1.0
    assert not np.allclose(soft, style)
    np.testing.assert_allclose(
        g((x, uniform_indicator(3, K)), branch="soft_mask"), soft, atol=1e-6
    )


def test_branch_names_are_the_variant_names_and_weights_keep_theirs():
    g = _generator()
    x = _images()
    assert BRANCHES == (variants.SOFT_MASK, variants.STYLE_TRANSFER)
    np.testing.assert_allclose(g((x, onehot_indicator(np.array([1, 2]), K)), branch="style_transfer"),
                               g.style_transfer(x, np.array([1, 2])), atol=1e-6)
    # The old argument value is refused; the decoders' layer names (stored in checkpoints) stay.
    with pytest.raises(ValueError, match="branch='style'"):
        g((x, onehot_indicator(np.array([1, 2]), K)), branch="style")
    assert {layer.name for layer in g.layers} >= {"soft_mask_branch", "style_branch"}


def test_branches_share_no_variables():
    g = _generator()
    soft_ids = {id(v) for v in g.soft_mask_branch.trainable_variables}
    style_ids = {id(v) for v in g.style_branch.trainable_variables}
    assert soft_ids and style_ids and not soft_ids & style_ids
    x = _images()
    soft_before = g.soft_mask(x).numpy()
    style_before = g.style_transfer(x, np.array([1, 2])).numpy()
    for v in g.style_branch.trainable_variables:
        v.assign(v + 0.5)
    np.testing.assert_allclose(g.soft_mask(x), soft_before, atol=1e-6)
    assert not np.allclose(g.style_transfer(x, np.array([1, 2])), style_before)


def test_generate_mixes_branches_per_example():
    g = _generator()
    x = _images(3)
    targets = np.array([2, 0, 1])
    slot = np.array([1.0, 0.0, 1.0], "float32")
    mixed = g.generate(x, targets, slot).numpy()
    np.testing.assert_allclose(mixed[[0, 2]], g.soft_mask(x[[0, 2]]), atol=1e-5)
    np.testing.assert_allclose(mixed[1:2], g.style_transfer(x[1:2], targets[1:2]), atol=1e-5)


def test_config_round_trip_gives_same_outputs():
    g = _generator()
    clone = Generator.from_config(g.get_config())
    assert clone.get_config() == g.get_config()
    clone.set_weights(g.get_weights())
    x = _images()
    np.testing.assert_allclose(clone.soft_mask(x), g.soft_mask(x), atol=1e-6)
    np.testing.assert_allclose(clone.style_transfer(x, [0, 2]), g.style_transfer(x, [0, 2]), atol=1e-6)


def test_width_and_depth_follow_the_config():
    g = Generator(num_domains=2, image_size=SIZE, base_filters=4, num_res_blocks=2)
    assert g.encoder.output.shape[1:] == (8, 4, 16)
    assert g.encoder.get_layer("encoder_res2_add") is not None
    assert g.style_branch.get_layer("style_branch_up2_deconv").filters == 4


def test_traces_in_a_tf_function_with_unknown_batch():
    g = _generator()
    soft = tf.function(g.soft_mask, input_signature=[tf.TensorSpec([None, *SIZE, 3], tf.float32)])
    style = tf.function(
        g.style_transfer,
        input_signature=[tf.TensorSpec([None, *SIZE, 3], tf.float32), tf.TensorSpec([None], tf.int64)],
    )
    x = _images()
    np.testing.assert_allclose(soft(x), g.soft_mask(x), atol=1e-5)
    np.testing.assert_allclose(style(x, np.array([1, 0])), g.style_transfer(x, [1, 0]), atol=1e-5)


def test_bad_arguments_are_reported_with_their_value():
    with pytest.raises(ValueError, match="image_size=\\(30, 16\\)"):
        Generator(image_size=(30, 16))
    with pytest.raises(ValueError, match="branch='mask'"):
        _generator()((_images(), uniform_indicator(2, K)), branch="mask")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_upsampling_replaces_the_deconvolutions_and_round_trips(mode):
    g = Generator(num_domains=K, image_size=SIZE, base_filters=4, num_res_blocks=1, upsample=mode)
    assert g.style_branch.get_layer("style_branch_up2_resize").interpolation == mode
    assert g.soft_mask_branch.get_layer("soft_mask_branch_up1_conv").kernel_size == (3, 3)
    assert not any(layer.name.endswith("_deconv") for layer in g.style_branch.layers)
    clone = Generator.from_config(g.get_config())
    assert clone.get_config()["upsample"] == mode
    clone.set_weights(g.get_weights())
    x = _images()
    np.testing.assert_allclose(clone.soft_mask(x), g.soft_mask(x), atol=1e-6)
    with pytest.raises(ValueError, match="upsample='pixel'"):
        Generator(num_domains=K, image_size=SIZE, upsample="pixel")


def test_skips_feed_the_encoders_early_features_to_both_decoders():
    g = Generator(num_domains=K, image_size=SIZE, base_filters=4, num_res_blocks=1, skips=True)
    stem, down1 = (g.encoder.get_layer(f"encoder_{n}_relu").output for n in ("stem", "down1"))
    assert [t.shape[1:] for t in g.encoder.outputs[1:]] == [down1.shape[1:], stem.shape[1:]]
    for branch in (g.style_branch, g.soft_mask_branch):
        assert branch.get_layer(f"{branch.name}_up2_deconv").input.shape[-1] == 8 + 8  # up1 (2F) + down1 (2F)
        assert branch.get_layer(f"{branch.name}_out_conv").input.shape[-1] == 4 + 4  # up2 (F) + stem (F)
    x = _images()
    mixed = g.generate(x, np.array([1, 0]), np.array([1.0, 0.0]))
    np.testing.assert_allclose(mixed[:1], g.soft_mask(x[:1]), atol=1e-5)
    np.testing.assert_allclose(mixed[1:], g.style_transfer(x[1:], [0]), atol=1e-5)
    clone = Generator.from_config(g.get_config())
    assert clone.skips and not _generator().skips
    clone.set_weights(g.get_weights())
    np.testing.assert_allclose(clone.style_transfer(x, [1, 0]), g.style_transfer(x, [1, 0]), atol=1e-6)


def test_resize_upsampling_makes_no_checkerboard_from_a_flat_input():
    # A 4x4 stride-2 deconv covers output pixels unevenly (a period-2 pattern from a constant input); a
    # resize + conv does not: away from the border its output of a constant map is constant.
    flat = np.ones((1, 8, 8, 4), "float32")
    spreads = {}
    for mode in ("transposed", "nearest"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 4))
        block = keras.Model(inputs, apply_upsample_norm_relu(inputs, 6, mode, name="up"))
        conv = block.get_layer("up_deconv" if mode == "transposed" else "up_conv")
        pre_norm = keras.Model(inputs, conv.output)(flat).numpy()[0, 2:-2, 2:-2]
        spreads[mode] = float(np.max(pre_norm.std(axis=(0, 1))))
    assert spreads["nearest"] < 1e-5 < 0.01 < spreads["transposed"]


def test_keep_bias_starts_the_attention_branch_near_a_copy_of_its_input():
    x = _images(4)
    errors = {}
    for keep_bias in (0.0, 3.0):
        keras.utils.set_random_seed(1)
        g = Generator(num_domains=K, image_size=SIZE, base_filters=4, num_res_blocks=1, attention="soft_mask",
                      keep_bias=keep_bias)
        _, bias = g.soft_mask_branch.get_layer("soft_mask_branch_keep_conv").get_weights()
        np.testing.assert_array_equal(bias, [keep_bias])
        errors[keep_bias] = float(np.abs(g.soft_mask(x).numpy() - x).mean())
        clone = Generator.from_config(g.get_config())
        assert clone.keep_bias == keep_bias
    # keep ~0.95 instead of ~0.5: the untrained output differs from its input ~10x less.
    assert errors[3.0] < 0.2 * errors[0.0]
    # Generators saved before the setting existed load with Keras' zeros.
    config = Generator(num_domains=K, image_size=SIZE, base_filters=4, num_res_blocks=1).get_config()
    del config["keep_bias"]
    assert Generator.from_config(config).keep_bias == 0.0


@pytest.mark.parametrize("attention, skips", [("soft_mask", False), ("both", True)])
def test_attention_output_keeps_the_input_where_its_mask_is_open(attention, skips):
    g = Generator(num_domains=K, image_size=SIZE, base_filters=4, num_res_blocks=1, skips=skips, attention=attention)
    x = _images(3)
    branches = (g.soft_mask_branch, g.style_branch) if attention == "both" else (g.soft_mask_branch,)
    assert [any(layer.name.endswith("_keep_conv") for layer in b.layers) for b in (g.soft_mask_branch, g.style_branch)
            ] == [True, attention == "both"]
    targets = np.array([1, 0, 2])
    for keep_logit, expected in ((30.0, x), (-30.0, None)):
        for branch in branches:
            conv = branch.get_layer(f"{branch.name}_keep_conv")
            kernel, bias = conv.get_weights()
            conv.set_weights([np.zeros_like(kernel), np.array([keep_logit], "float32")])
        soft = g.soft_mask(x).numpy()
        if expected is not None:  # keep-mask open everywhere: the input itself
            np.testing.assert_allclose(soft, x, atol=1e-6)
        else:  # closed: a content image that does not depend on the input's pixels one to one
            assert np.abs(soft).max() <= 1.0 and np.abs(soft - x).mean() > 0.1
        style = g.style_transfer(x, targets).numpy()
        assert np.allclose(style, x, atol=1e-6) == (attention == "both" and keep_logit > 0)
    # generate() hands each decoder its own examples' images.
    slot = np.array([0.0, 1.0, 0.0], "float32")
    mixed = g.generate(x, targets, slot).numpy()
    np.testing.assert_allclose(mixed[1:2], g.soft_mask(x[1:2]), atol=1e-5)
    np.testing.assert_allclose(mixed[[0, 2]], g.style_transfer(x[[0, 2]], targets[[0, 2]]), atol=1e-5)
    clone = Generator.from_config(g.get_config())
    assert clone.attention == attention and _generator().attention == "none"
    clone.set_weights(g.get_weights())
    np.testing.assert_allclose(clone.soft_mask(x), g.soft_mask(x), atol=1e-6)
    with pytest.raises(ValueError, match="attention='mask'"):
        Generator(num_domains=K, image_size=SIZE, attention="mask")
