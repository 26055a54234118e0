"""Tests for bgshift_tf.data.images: the pixel conventions every module shares."""

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.data import images

# Two 2x2 images, example 0 and example 1 (3 channels, same value per pixel), also used by test_losses.
PIXELS = np.array(
    [[[[0.5] * 3, [-0.5] * 3], [[1.0] * 3, [0.0] * 3]],
     [[[0.2] * 3, [0.2] * 3], [[0.2] * 3, [0.2] * 3]]], "float32"
)  # [2, 2, 2, 3]
MASKS = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]], [[[1.0], [1.0]], [[1.0], [0.0]]]], "float32")


def test_hard_mask_blacks_out_background():
    masked = np.asarray(images.hard_mask(tf.constant(PIXELS), tf.constant(MASKS)))
    # (x + 1) * m - 1: kept pixels unchanged, background -> -1.
    np.testing.assert_allclose(masked[0, :, :, 0], [[0.5, -1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(masked[1, :, :, 0], [[0.2, 0.2], [0.2, -1.0]], rtol=1e-6)


def test_model_range_and_uint8_are_inverse_and_clip():
    levels = np.arange(256, dtype=np.float32)
    scaled = images.to_model_range(levels)
    assert scaled[0] == -1.0 and scaled[-1] == 1.0
    np.testing.assert_array_equal(images.to_uint8(scaled).numpy(), levels.astype(np.uint8))
    np.testing.assert_array_equal(images.to_uint8(tf.constant([-3.0, 2.0])).numpy(), [0, 255])


def test_resize_uint8_rounds_and_keeps_matching_sizes_untouched():
    image = tf.constant([[[0], [255]], [[255], [0]]], tf.uint8)  # [2, 2, 1]
    np.testing.assert_array_equal(images.resize_uint8(image, (2, 2)).numpy(), image.numpy())
    wide = images.resize_uint8(image, (2, 4)).numpy()
    assert wide.dtype == np.uint8 and wide.shape == (2, 4, 1)
    expected = np.clip(np.round(images.resize(image, (2, 4)).numpy()), 0, 255)
    np.testing.assert_array_equal(wide, expected)
    nearest = images.resize(image, (4, 4), "nearest").numpy()
    assert set(np.unique(nearest)) == {0.0, 255.0}


def test_split_folder_names_the_market_layout_and_rejects_others():
    assert [images.split_folder(s) for s in ("train", "query", "gallery")] == [
        "bounding_box_train", "query", "bounding_box_test"]
    with pytest.raises(ValueError, match="split='test'"):
        images.split_folder("test")
