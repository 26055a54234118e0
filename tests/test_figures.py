"""Tests for bgshift_tf.report.figures (loss curves, TensorBoard reader) and data.images pixel pictures."""

import os

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.data import images
from bgshift_tf.report import figures


def test_to_uint8_rgb_maps_float_range_and_grey():
    out = images.to_uint8_rgb(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    mask = images.mask_to_rgb(np.array([[0.0, 1.0]], dtype=np.float32)[..., None])
    np.testing.assert_array_equal(mask[0, :, 1], [0, 255])


def test_to_uint8_rgb_rejects_out_of_range_float():
    with pytest.raises(ValueError, match=r"\[-1, 1\].*2"):
        images.to_uint8_rgb(np.full((2, 2, 3), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        images.to_uint8_rgb(np.zeros((2, 2, 5), dtype=np.uint8))


def test_plot_loss_curves_accepts_both_forms_and_saves_atomically(tmp_path):
    curves = {"losses/g": {0: 3.0, 1: 2.0, 2: 1.5}, "losses/d": (np.arange(3), np.array([1.0, 0.5, 0.2]))}
    fig = figures.plot_loss_curves(curves, smoothing=0.5)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["losses/g", "losses/d"]
    path = figures.save_figure(fig, tmp_path / "curves.png")
    assert Image.open(path).size[0] > 100
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
    with pytest.raises(ValueError, match="losses/x"):
        figures.plot_loss_curves({"losses/x": ([0, 1], [1.0])})
