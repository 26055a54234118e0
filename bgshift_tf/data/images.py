"""The package's pixel conventions in one place: value ranges, the hard mask, resizing, split folders, and
uint8 RGB pictures of images and masks (`to_uint8_rgb`, `mask_to_rgb`: what figures and contact sheets draw).

    stored pixels   uint8 [.., H, W, 3] in [0, 255]  (decoded JPEG)
    model range     float32 [.., H, W, 3] in [-1, 1] (every network's input and output)
    masks           float32 [.., H, W, 1] in {0, 1}  (1 = body)

`to_model_range` and `hard_mask` are plain arithmetic, so they take numpy arrays as well as tensors.
"""

import numpy as np
import tensorflow as tf

# Market-1501's folder of each split; the layout every dataset on disk and every JPEG export follows.
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def to_model_range(pixels):
    """Pixels in [0, 255] (float, or uint8 numpy) -> float in [-1, 1]."""
    return pixels / 127.5 - 1.0


def to_uint8(values):
    """float in [-1, 1] -> uint8 tensor in [0, 255] (rounded half to even, clipped)."""
    return tf.cast(tf.round(tf.clip_by_value((values + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def hard_mask(images, masks):
    """Black out the background in [0, 1] space: (x + 1) * m - 1. [B,H,W,3], [B,H,W,1] -> [B,H,W,3]."""
    return (images + 1.0) * masks - 1.0


def resize(images, size, method="bilinear"):
    """Any dtype [.., h, w, C] -> float32 [.., H, W, C] at `size` = (H, W), same units, not rounded."""
    return tf.image.resize(tf.cast(images, tf.float32), size, method=method)


def resize_uint8(image, size, method="bilinear"):
    """uint8 [h, w, C] -> uint8 [H, W, C] at `size` (rounded, clipped); no work when the size matches.

    Staying uint8 moves 4x less memory than float through a pipeline's shuffle and batch.
    """
    target = tf.constant(size, tf.int32)

    def resized():
        return tf.cast(tf.clip_by_value(tf.round(resize(image, target, method)), 0.0, 255.0), tf.uint8)

    return tf.cond(tf.reduce_all(tf.shape(image)[:2] == target), lambda: image, resized)


def split_folder(split):
    """The Market-1501 folder of a split ("train" -> "bounding_box_train"), or ValueError naming it."""
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"`split` must be one of {list(SPLIT_FOLDERS)}. Received: split={split!r}")
    return SPLIT_FOLDERS[split]


def to_uint8_rgb(image, name: str = "image") -> np.ndarray:
    """Converts one image to uint8 `[H, W, 3]`.

    Args:
      image: uint8 `[H, W(, 1|3)]` in [0, 255] or float `[H, W(, 1|3)]` in [-1, 1].
      name: what to call the image in error messages.
    Returns:
      uint8 `[H, W, 3]`.
    Raises:
      ValueError: wrong rank/channels, or a float image outside [-1, 1].
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"`{name}` must be [H, W], [H, W, 1] or [H, W, 3]. Received shape: {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"`{name}` must be uint8 or float in [-1, 1]. Received dtype: {array.dtype}")
    low, high = float(np.min(array)), float(np.max(array))
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"float `{name}` must lie in [-1, 1] (the package's pixel convention). "
            f"Received range: [{low:.4g}, {high:.4g}]"
        )
    return np.asarray(to_uint8(array))


def mask_to_rgb(mask, name: str = "mask") -> np.ndarray:
    """Body mask -> uint8 `[H, W, 3]` picture: background black, body white.

    Args:
      mask: float in [0, 1], bool, or uint8 0/255; shape `[H, W]` or `[H, W, 1]`.
    """
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be [H, W] or [H, W, 1]. Received shape: {np.asarray(mask).shape}")
    if array.dtype == np.uint8:
        grey = array
    else:
        array = array.astype(np.float32)
        if float(array.min()) < 0.0 or float(array.max()) > 1.0:
            raise ValueError(
                f"float `{name}` must lie in [0, 1]. Received range: [{array.min():.4g}, {array.max():.4g}]"
            )
        grey = np.rint(array * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
