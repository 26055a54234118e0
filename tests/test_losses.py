"""Tests for bgshift_tf.training.losses: every loss against numbers worked by hand on tiny tensors."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.training import losses
from test_images import MASKS, PIXELS  # the two hand-made 2x2 images and masks used throughout


def test_l1_and_mse_are_per_example_means():
    zeros = np.zeros_like(PIXELS)
    # Example 0: |0.5| + |-0.5| + |1| + |0| = 2 over 4 pixels -> 0.5; squares: 0.25+0.25+1+0 = 1.5 -> 0.375.
    np.testing.assert_allclose(losses.l1_per_example(PIXELS, zeros), [0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(losses.mse_per_example(PIXELS, zeros), [0.375, 0.04], rtol=1e-6)
    np.testing.assert_allclose(losses.identity_loss(PIXELS, zeros), [0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(losses.reconstruction_loss(zeros, PIXELS), [0.5, 0.2], rtol=1e-6)


def test_wgan_terms():
    real = np.array([[[[1.0], [3.0]]], [[[0.0], [0.0]]]], "float32")  # patch means 2, 0
    fake = np.array([[[[-1.0], [0.0]]], [[[4.0], [2.0]]]], "float32")  # patch means -0.5, 3
    np.testing.assert_allclose(losses.critic_loss(real, fake), [-2.5, 3.0])
    np.testing.assert_allclose(losses.generator_adversarial_loss(fake), [0.5, -3.0])


def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = sum(w * x): the gradient is w everywhere, ||w|| = sqrt(4 + 4 + 1) = 3 -> (3 - 1)^2 = 4.
    w = tf.constant([2.0, -2.0, 1.0])
    real = tf.random.normal([2, 1, 1, 3])
    fake = tf.random.normal([2, 1, 1, 3])
    gp = losses.gradient_penalty(lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3]), real, fake, [0.3, 0.9])
    np.testing.assert_allclose(gp, [4.0, 4.0], rtol=1e-5)


def test_gradient_penalty_uses_per_example_interpolates():
    # critic(x) = 0.5 * sum(x^2): gradient = x_hat. real = (3, 4), fake = 0.
    # alpha 0.5 -> x_hat = (1.5, 2), norm 2.5 -> 2.25; alpha 1 -> norm 5 -> 16; alpha 0 -> norm 0 -> 1.
    real = tf.constant([[[[3.0], [4.0]]]] * 3)
    fake = tf.zeros_like(real)
    gp = losses.gradient_penalty(lambda x: 0.5 * tf.square(x), real, fake, tf.constant([0.5, 1.0, 0.0]))
    np.testing.assert_allclose(gp, [2.25, 16.0, 1.0], rtol=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
    # critic(x) = v * sum(x) on 1x1x4x1 inputs: gradient norm = 2|v|, GP = (2v - 1)^2, d/dv = 4(2v - 1).
    v = tf.Variable(1.5)
    real = tf.ones([1, 1, 4, 1])
    with tf.GradientTape() as tape:
        gp = losses.gradient_penalty(lambda x: v * tf.reduce_sum(x), real, tf.zeros_like(real), [0.5])
    np.testing.assert_allclose(gp, [4.0], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(gp, v), 8.0, rtol=1e-5)


def test_domain_cross_entropy_hard_labels():
    logits = tf.constant([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # softmax (1/2, 1/4, 1/4), uniform
    np.testing.assert_allclose(
        losses.domain_cross_entropy(logits, tf.constant([1, 2], tf.int64)), [math.log(4.0), math.log(3.0)],
        rtol=1e-6,
    )


def test_soft_domain_cross_entropy():
    logits = tf.constant([[math.log(2.0), 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    targets = tf.constant([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    # Uniform target: -(1/3)(log 1/2 + 2 log 1/4) = (5/3) log 2. One-hot: the hard-label value log 2.
    np.testing.assert_allclose(
        losses.soft_domain_cross_entropy(logits, targets), [5 / 3 * math.log(2.0), math.log(2.0)], rtol=1e-6
    )


def test_background_suppression_loss():
    soft = np.zeros_like(PIXELS)
    # masked example 0 = (0.5, -1, -1, 0): squares (0.25 + 1 + 1 + 0) / 4 = 0.5625.
    # masked example 1 = (0.2, 0.2, 0.2, -1): (3 * 0.04 + 1) / 4 = 0.28.
    np.testing.assert_allclose(losses.background_suppression_loss(soft, PIXELS, MASKS), [0.5625, 0.28], rtol=1e-6)


def test_style_consistency_loss_masks_every_term_with_the_source_mask():
    soft = np.zeros_like(PIXELS)
    others = np.stack([np.ones_like(PIXELS), np.full_like(PIXELS, 0.5)])  # G(I, D_k) for two other domains
    # Example 0: |0 - masked(I)| = (0.5, 1, 1, 0) -> 0.625; masked(ones) = (1, -1, -1, 1) -> 1;
    #            masked(0.5) = (0.5, -1, -1, 0.5) -> 0.75. Total 2.375.
    # Example 1: masked(I) = (.2, .2, .2, -1) -> 0.4; masked(ones) -> 1; masked(0.5) = (.5, .5, .5, -1) -> 0.625.
    np.testing.assert_allclose(
        losses.style_consistency_loss(soft, PIXELS, MASKS, others), [2.375, 2.025], rtol=1e-6
    )


def test_style_consistency_with_one_other_domain_equals_two_l1_terms():
    rng = np.random.default_rng(0)
    soft, images, other = (rng.uniform(-1, 1, (2, 4, 2, 3)).astype("float32") for _ in range(3))
    masks = (rng.uniform(size=(2, 4, 2, 1)) > 0.5).astype("float32")
    expected = np.abs(soft - ((images + 1) * masks - 1)).mean(axis=(1, 2, 3)) + np.abs(
        soft - ((other + 1) * masks - 1)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(losses.style_consistency_loss(soft, images, masks, other[None]), expected,
                               rtol=1e-5)


@pytest.mark.parametrize("fn", [losses.l1_per_example, losses.mse_per_example])
def test_per_example_losses_do_not_mix_examples(fn):
    a = tf.random.normal([3, 2, 2, 3])
    b = tf.random.normal([3, 2, 2, 3])
    np.testing.assert_allclose(fn(a, b)[1:2], fn(a[1:2], b[1:2]), rtol=1e-6)


# === LossWeights ===


def test_loss_weights_default_to_the_paper_and_reject_bad_values():
    # SPEC §2: L_G = L_adv + L_cls^f + 10 L_rec + 5 L_idc + 5 L_bgs + 5 L_sc, GP weight 10.
    assert dataclasses.asdict(losses.LossWeights()) == dict(
        lambda_adv=1.0, lambda_cls=1.0, lambda_rec=10.0, lambda_idc=5.0, lambda_bgs=5.0, lambda_sc=5.0, lambda_gp=10.0)
    assert losses.LossWeights(lambda_sc=0).lambda_sc == 0.0
    for bad in (-1.0, float("nan"), "5", True):
        with pytest.raises(ValueError, match=f"lambda_bgs={bad!r}"):
            losses.LossWeights(lambda_bgs=bad)


def test_loss_weights_from_config_needs_exactly_its_keys():
    config = {"batch_size": 16, **dataclasses.asdict(losses.LossWeights(lambda_bgs=50))}
    assert losses.LossWeights.from_config(config) == losses.LossWeights(lambda_bgs=50)
    missing = {k: v for k, v in config.items() if k != "lambda_sc"}
    with pytest.raises(ValueError, match=r"gan flags: .*Missing: \['lambda_sc'\]; unknown: \[\]"):
        losses.LossWeights.from_config(missing, source="gan flags")
    with pytest.raises(ValueError, match=r"Missing: \[\]; unknown: \['lambda_scc'\]"):
        losses.LossWeights.from_config({**config, "lambda_scc": 5.0})
