"""Tests for bgshift_tf.models.discriminator (tiny sizes)."""

import numpy as np
import pytest

from bgshift_tf.models.discriminator import Discriminator


def _images(batch, size):
    return np.random.default_rng(0).uniform(-1, 1, size=(batch, *size, 3)).astype("float32")


@pytest.mark.parametrize("size,layers,patch", [((32, 16), 4, (2, 1)), ((64, 32), 5, (2, 1)), ((32, 16), 2, (8, 4))])
def test_output_shapes(size, layers, patch):
    d = Discriminator(num_domains=3, image_size=size, base_filters=8, num_layers=layers)
    patch_logits, domain_logits = d(_images(2, size))
    assert patch_logits.shape == (2, *patch, 1)
    assert domain_logits.shape == (2, 3)
    assert d.network.get_layer("domain_head").kernel.shape == (*patch, 8 * 2 ** (layers - 1), 3)
    assert d.network.get_layer(f"down{layers}_conv").filters == 8 * 2 ** (layers - 1)


def test_leaky_relu_slope_and_no_norm():
    d = Discriminator(num_domains=2, image_size=(32, 16), base_filters=8, num_layers=3)
    slopes = {layer.negative_slope for layer in d.network.layers if "lrelu" in layer.name}
    assert slopes == {0.01}
    assert not any("norm" in layer.name for layer in d.network.layers)


def test_config_round_trip_gives_same_outputs():
    d = Discriminator(num_domains=3, image_size=(32, 16), base_filters=8, num_layers=4)
    clone = Discriminator.from_config(d.get_config())
    clone.set_weights(d.get_weights())
    x = _images(2, (32, 16))
    for a, b in zip(d(x), clone(x)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_image_too_small_for_the_depth_is_rejected():
    with pytest.raises(ValueError, match="num_layers=6"):
        Discriminator(image_size=(32, 16), num_layers=6)
