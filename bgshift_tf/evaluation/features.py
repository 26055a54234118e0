"""Feature extraction over evaluation batches, with optional flip averaging.

Batches are the dicts of `bgshift_tf.data.input.make_eval_dataset` (`image` float32 [B, H, W, 3] in
[-1, 1], `pid`, `camera` int64 [B], `filename` string [B], ...). The caller chooses the network inputs
through `embed_fn(batch) -> [B, D]`: `model.embed(batch["image"])` for IDE, and for DA-2S
`model.embed((batch["soft_mask_image"], batch["image"]))` over batches paired by `with_soft_mask`.
"""

import itertools
import logging
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bgshift_tf.core.rank import NoValidQueryError

SOFT_MASK_KEY = "soft_mask_image"


class FeatureSet(NamedTuple):
    """Features of an evaluation split, row i describing one image."""

    features: np.ndarray  # float32 [N, D]
    pids: np.ndarray  # int64 [N]
    camids: np.ndarray  # int64 [N]
    filenames: np.ndarray  # str [N]


def without_distractors(query):
    """(`query` without its pid 0 (distractor) / -1 (junk) rows, how many were dropped), with a logged count.

    Raises NoValidQueryError when every query is one of them (or there is none): nothing to score.
    """
    distractor = query.pids <= 0
    if distractor.all():
        raise NoValidQueryError(f"No valid query: all {len(distractor)} queries have pid 0 (distractor) or -1 "
                                "(junk), none is an identity")
    if distractor.any():
        logging.warning("skipping %d of %d queries with pid 0 (distractor) or -1 (junk): not identities",
                        int(distractor.sum()), len(distractor))
        query = FeatureSet(*(field[~distractor] for field in query))
    return query, int(distractor.sum())


def flip_horizontal(batch, image_keys=("image",)):
    """Copy of `batch` with the [B, H, W, C] tensors under `image_keys` mirrored left-right."""
    return {
        key: tf.reverse(value, axis=[2]) if key in image_keys else value for key, value in batch.items()
    }


def _filenames(batch):
    names = np.asarray(batch["filename"]).tolist()
    return np.array([name.decode() if isinstance(name, bytes) else str(name) for name in names])


def with_soft_mask(batches, soft_mask_batches):
    """Pairs original batches with the batches of their soft-mask images (DA-2S stream 1).

    Yields each original batch dict plus `soft_mask_image` (the other batch's `image`). Both inputs must
    list the same files in the same order (same batch size): any difference raises ValueError naming it.
    """
    missing = object()
    pairs = itertools.zip_longest(batches, soft_mask_batches, fillvalue=missing)
    for index, (batch, soft) in enumerate(pairs):
        if batch is missing or soft is missing:
            longer = "soft-mask" if batch is missing else "original"
            raise ValueError(
                f"The {longer} images have more batches than the other input (from batch {index})."
            )
        names, soft_names = _filenames(batch), _filenames(soft)
        if names.shape != soft_names.shape or not np.array_equal(names, soft_names):
            raise ValueError(
                f"Soft-mask batch {index} does not list the same files as the original batch: "
                f"{soft_names[:3].tolist()}... vs {names[:3].tolist()}..."
            )
        yield {**batch, SOFT_MASK_KEY: soft["image"]}


def extract_features(
    batches, embed_fn, *, flip_average=False, image_keys=("image",), num_batches=None, progress=True,
    description="features",
):
    """Embeds every batch and gathers features with their labels.

    Args:
      batches: iterable of batch dicts (a `tf.data.Dataset` or a generator such as `with_soft_mask`).
      embed_fn: batch dict -> features [B, D] (tensor or array).
      flip_average: if True, the feature of an image is the mean of the features of the image and of
        its horizontal mirror (every key in `image_keys` is mirrored).
      image_keys: image tensors of the batch that `flip_average` mirrors (add `soft_mask_image` for DA-2S).
      num_batches: total for the progress bar (taken from the dataset's cardinality when known).
      progress: show a tqdm progress bar.

    Returns:
      FeatureSet (features float32 [N, D], pids int64 [N], camids int64 [N], filenames str [N]).
    """
    if num_batches is None and isinstance(batches, tf.data.Dataset):
        cardinality = int(batches.cardinality())
        num_batches = cardinality if cardinality >= 0 else None
    features, pids, camids, filenames = [], [], [], []
    for batch in tqdm(batches, total=num_batches, desc=description, unit="batch", disable=not progress):
        embedding = np.asarray(embed_fn(batch), dtype=np.float32)
        if flip_average:
            mirrored = np.asarray(embed_fn(flip_horizontal(batch, image_keys)), dtype=np.float32)
            embedding = (embedding + mirrored) / 2
        batch_size = len(np.asarray(batch["pid"]))
        if embedding.ndim != 2 or embedding.shape[0] != batch_size:
            raise ValueError(
                f"`embed_fn` must return [batch={batch_size}, D] features. Received: shape {embedding.shape}"
            )
        features.append(embedding)
        pids.append(np.asarray(batch["pid"], dtype=np.int64))
        camids.append(np.asarray(batch["camera"], dtype=np.int64))
        filenames.append(_filenames(batch))
    if not features:
        raise ValueError(f"No batch to extract {description} from: the input dataset is empty.")
    return FeatureSet(
        np.concatenate(features), np.concatenate(pids), np.concatenate(camids), np.concatenate(filenames)
    )
