"""What an exported embedder variant does to re-ID ranking: rank-1 / mAP vs the float32 Keras model.

A faster variant (int8, float16) that ranks differently must say so (issue 16): the export job embeds a
labelled query / gallery set with the Keras model and with every converted embedder, ranks each with
`core.rank.evaluate_rank` (euclidean distance, standard convention), and reports each variant's
rank-1 and mAP next to their change from Keras and the share of queries whose top-1 gallery match
stays the same.
"""

import numpy as np

from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import evaluate_rank
from bgshift_tf.data.images import to_uint8
from bgshift_tf.data.input import make_eval_dataset
from bgshift_tf.data.shards import shard_files


def load_labelled_images(files, image_size, split):
    """uint8 [N, h, w, 3] images with int pids [N] and camera ids [N] of one split of a TFRecord folder."""
    images, pids, camids = [], [], []
    for batch in make_eval_dataset(shard_files(files, split), image_size=tuple(image_size), batch_size=64):
        images.append(to_uint8(batch["image"]).numpy())
        pids.append(batch["pid"].numpy())
        camids.append(batch["camera"].numpy())
    if not images:
        raise ValueError(f"Split {split!r} of {files} holds no record: nothing to rank.")
    return np.concatenate(images), np.concatenate(pids), np.concatenate(camids)


def _metrics(query_features, gallery_features, query, gallery):
    distances = pairwise_distance(query_features, gallery_features)
    result = evaluate_rank(distances, query["pids"], gallery["pids"], query["camids"], gallery["camids"],
                           max_rank=1)
    return {"rank1": float(result["cmc"][0]), "mAP": float(result["mAP"])}, np.argmin(distances, axis=1)


def ranking_effect(reference, variants, query, gallery):
    """Rank-1 / mAP of the Keras features and of each variant's, with the changes.

    Args:
        reference: (query_features [Q, D], gallery_features [G, D]) of the float32 Keras model.
        variants: {name: (query_features, gallery_features)} of the exported models.
        query, gallery: {"pids": int [Q] / [G], "camids": int [Q] / [G]}.

    Returns:
        {"keras": {"rank1", "mAP"}, name: {"rank1", "mAP", "rank1_change", "mAP_change",
        "top1_agreement"}} (changes = variant - Keras; agreement in [0, 1]).
    """
    keras_metrics, keras_top1 = _metrics(*reference, query, gallery)
    report = {"keras": keras_metrics}
    for name, (query_features, gallery_features) in variants.items():
        metrics, top1 = _metrics(query_features, gallery_features, query, gallery)
        report[name] = {**metrics, "rank1_change": metrics["rank1"] - keras_metrics["rank1"],
                        "mAP_change": metrics["mAP"] - keras_metrics["mAP"],
                        "top1_agreement": float(np.mean(top1 == keras_top1))}
    return report
