"""The package's pixel conventions in one place: value ranges, the hard mask, resizing, split folders.

    stored pixels   uint8 [.., H, W, 3] in [0, 255]  (decoded JPEG)
    model range     float32 [.., H, W, 3] in [-1, 1] (every network's input and output)
    masks           float32 [.., H, W, 1] in {0, 1}  (1 = body)

`to_model_range` and `hard_mask` are plain arithmetic, so they take numpy arrays as well as tensors.
"""

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
