"""Tests of feature extraction (flip averaging, soft-mask pairing) and of the distance matrices."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.evaluation.features import extract_features, flip_horizontal, with_soft_mask


def _batches(images, pids, cams, names, batch_size=3):
    return tf.data.Dataset.from_tensor_slices(
        dict(image=images, pid=pids, camera=cams, filename=names)
    ).batch(batch_size)


def _tiny_data(seed=0, num=7, height=32, width=16):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (num, height, width, 3)).astype(np.float32)
    pids = rng.integers(0, 5, num).astype(np.int64)
    cams = rng.integers(1, 3, num).astype(np.int64)
    names = np.array([f"{i:04d}_c1.jpg".encode() for i in range(num)])
    return images, pids, cams, names


def _tiny_model():
    """Stand-in for IDE: not flip-invariant (the Dense layer sees pixel positions)."""
    return keras.Sequential(
        [
            keras.Input((32, 16, 3)),
            keras.layers.Conv2D(4, 3, strides=2, name="stand_in_conv"),
            keras.layers.Flatten(name="stand_in_flatten"),
            keras.layers.Dense(8, name="stand_in_dense"),
        ],
        name="stand_in",
    )


def test_features_follow_dataset_order_with_labels():
    images, pids, cams, names = _tiny_data()
    model = _tiny_model()
    result = extract_features(_batches(images, pids, cams, names), lambda b: model(b["image"]), progress=False)
    np.testing.assert_allclose(result.features, model(images).numpy(), rtol=1e-5, atol=1e-6)
    assert result.features.dtype == np.float32 and result.features.shape == (7, 8)
    np.testing.assert_array_equal(result.pids, pids)
    np.testing.assert_array_equal(result.camids, cams)
    assert result.filenames.tolist() == [n.decode() for n in names]


def test_flip_average_is_the_mean_of_image_and_mirror_embeddings():
    images, pids, cams, names = _tiny_data(1)
    model = _tiny_model()
    result = extract_features(
        _batches(images, pids, cams, names), lambda b: model(b["image"]), flip_average=True, progress=False
    )
    plain, mirrored = model(images).numpy(), model(images[:, :, ::-1, :]).numpy()
    assert not np.allclose(plain, mirrored)
    np.testing.assert_allclose(result.features, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_flip_horizontal_mirrors_only_the_named_images():
    images, pids, cams, names = _tiny_data(2, num=2)
    batch = dict(image=tf.constant(images), soft_mask_image=tf.constant(images + 1), pid=tf.constant(pids))
    flipped = flip_horizontal(batch, image_keys=("image",))
    np.testing.assert_array_equal(flipped["image"].numpy(), images[:, :, ::-1, :])
    np.testing.assert_array_equal(flipped["soft_mask_image"].numpy(), images + 1)
    np.testing.assert_array_equal(flipped["pid"].numpy(), pids)


def test_soft_mask_pairing_feeds_both_streams_and_checks_files():
    images, pids, cams, names = _tiny_data(3)
    soft = -images
    paired = with_soft_mask(_batches(images, pids, cams, names), _batches(soft, pids, cams, names))
    # A two-stream stand-in: the difference of the two inputs' means.
    result = extract_features(
        paired,
        lambda b: tf.reduce_mean(b["soft_mask_image"] - b["image"], axis=[1, 2]),
        flip_average=True,
        image_keys=("image", "soft_mask_image"),
        progress=False,
    )
    np.testing.assert_allclose(result.features, (soft - images).mean(axis=(1, 2)), atol=1e-6)

    shuffled = names[::-1].copy()
    with pytest.raises(ValueError, match="Soft-mask batch 0 does not list the same files"):
        list(with_soft_mask(_batches(images, pids, cams, names), _batches(soft, pids, cams, shuffled)))
    with pytest.raises(ValueError, match="original images have more batches"):
        list(with_soft_mask(_batches(images, pids, cams, names), _batches(soft[:3], pids[:3], cams[:3], names[:3])))


def test_bad_embedding_shape_and_empty_input_raise():
    images, pids, cams, names = _tiny_data(4)
    with pytest.raises(ValueError, match=r"`embed_fn` must return \[batch=3, D\]"):
        extract_features(_batches(images, pids, cams, names), lambda b: tf.zeros([2, 4]), progress=False)
    with pytest.raises(ValueError, match="dataset is empty"):
        extract_features(_batches(images, pids, cams, names).take(0), lambda b: b["image"], progress=False)


def test_euclidean_and_cosine_distances_by_hand():
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    y = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    # Euclidean (plain, not squared): |(3,4)-(0,0)| = 5, |(3,4)-(3,0)| = 4, |(3,4)-(0,2)| = sqrt(13).
    np.testing.assert_allclose(
        pairwise_distance(x, y, chunk_rows=1), [[5, 4, np.sqrt(13)], [1, 2, np.sqrt(5)]], atol=1e-12
    )
    # Cosine: 1 - cos; (3,4) vs (3,0): 1 - 3/5 = 0.4; vs (0,2): 1 - 4/5 = 0.2; (1,0) vs (0,2): 1.
    np.testing.assert_allclose(pairwise_distance(x, y[1:], metric="cosine"), [[0.4, 0.2], [0, 1]], atol=1e-12)


def test_distance_bad_input_raises():
    with pytest.raises(ValueError, match="same feature dimension"):
        pairwise_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="all-zero feature row"):
        pairwise_distance(np.zeros((2, 3)), np.ones((2, 3)), metric="cosine")
    with pytest.raises(ValueError, match="`metric` must be one of"):
        pairwise_distance(np.ones((2, 3)), np.ones((2, 3)), metric="l1")
    with pytest.raises(ValueError, match="`y` holds NaN/Inf values \\(first in row 1\\)"):
        pairwise_distance(np.ones((2, 3)), np.array([[1.0, 2, 3], [np.nan, 0, 0]]))
