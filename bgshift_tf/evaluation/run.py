"""Evaluation of a trained re-ID run: features -> distances -> (re-ranking) -> CMC / mAP / mINP -> JSON.

`evaluate_run` is the library side of `python -m bgshift_tf.evaluate`. The model comes from
`bgshift_tf.training.reid.load_reid_model(run_dir)` (IDE or DA-2S) unless the caller injects one, or
injects the embedding function itself (tests, other frameworks). `evaluate_features` scores features
already extracted (e.g. several conventions or distances from one extraction).

DA-2S at test time (SPEC §3): stream 1 gets the soft-mask image made by SBSGAN, stream 2 the original
image; the soft-mask images come as their own TFRecords listing the same files in the same order.

`evaluate_cuhk03_classic` runs `evaluate_run` on each split folder of a `--cuhk03_split=all` build and
reports the mean and spread over the splits.

Sampling error of one evaluation: the metrics carry `bootstrap_ci` (`evaluation.stats.bootstrap_ci`: 95%
percentile interval of rank-1 and mAP over query identities, fractions), and the per-query results it is
computed from are saved beside the metrics JSON as `per_query_<json stem>.npz` (arrays "pid", "ap",
"first_match_rank", "rank1", "valid"; see `core.rank`). CUHK03 classic: each split's interval
resamples that split's test identities, each query carrying its rank-1 hit averaged over the
single-gallery-shot repeats (the gallery draws are averaged out, not resampled); the variation between
the 20 splits stays in the summary's spread.

Query/gallery features can be cached (`features_cache_dir`): extraction is the long part, so a second
run (another distance, re-ranking, another convention) or a resumed one reuses them when the inputs
match: the key holds the content's identity (each TFRecord file's size and mtime_ns, a shard folder's
manifest, the checkpoint files' sizes and mtimes), so a rebuilt folder or a newer checkpoint is extracted
again (`evaluation.feature_cache`).

Queries with pid 0 (distractors) or -1 (junk), the Market-1501 layout's non-identities
(`data/datasets/layout.py`), are never scored: they appear when the query files are gallery files (query =
gallery), are skipped with a logged count, and the metrics carry `num_skipped_distractor_queries`.
"""

import os

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import NoValidQueryError, evaluate_rank
from bgshift_tf.data.datasets import cuhk03
from bgshift_tf.evaluation.feature_cache import checkpoint_identity, split_features
from bgshift_tf.evaluation.features import SOFT_MASK_KEY, without_distractors
from bgshift_tf.evaluation.rerank import CONVENTIONS as RERANK_CONVENTIONS
from bgshift_tf.evaluation.rerank import k_reciprocal_rerank
from bgshift_tf.evaluation.search_eval import evaluate_on_index
from bgshift_tf.evaluation.stats import bootstrap_ci
from bgshift_tf.models.reid import DA2S
from bgshift_tf.training import loop
from bgshift_tf.training.reid import load_reid_model

REPORTED_RANKS = (1, 5, 10, 20)
CUHK03_SUMMARY_METRICS = ("rank1", "rank5", "rank10", "mAP")


def compiled_embed(model, *, two_inputs):
    """`model.embed` as one `tf.function` over the image tensors (eager Keras calls cost ~4x at 64x32);
    retracing is reduced so the last, smaller batch does not compile a graph of its own per size."""
    if two_inputs:
        return tf.function(lambda first, second: model.embed((first, second), training=False), reduce_retracing=True)
    return tf.function(lambda images: model.embed(images, training=False), reduce_retracing=True)


def _model_embed_fn(model):
    """The test-time inputs of each re-ID model: IDE sees the image; DA-2S (soft mask, original)."""
    if isinstance(model, DA2S):
        embed = compiled_embed(model, two_inputs=True)
        return lambda batch: embed(batch[SOFT_MASK_KEY], batch["image"]), True
    embed = compiled_embed(model, two_inputs=False)
    return lambda batch: embed(batch["image"]), False


def _load_run_model(run_dir, precision):
    if run_dir is None:
        raise ValueError("evaluate_run needs `run_dir`, `model` or `embed_fn`; all are None.")
    return load_reid_model(run_dir, precision)


def _compute_policy(model):
    """The dtype policy the model computes in (features differ between precisions), None without a model."""
    return model.dtype_policy.name if model is not None else None


def format_table(metrics):
    """One-row text table of a metrics dict from `evaluate_run`."""
    columns = [f"rank-{k}" for k in REPORTED_RANKS if f"rank{k}" in metrics] + ["mAP", "mINP", "valid q"]
    values = [f"{100 * metrics[f'rank{k}']:.2f}" for k in REPORTED_RANKS if f"rank{k}" in metrics]
    values += [f"{100 * metrics['mAP']:.2f}", f"{100 * metrics['mINP']:.2f}"]
    values.append(f"{metrics['num_valid_queries']}/{metrics['num_queries']}")
    widths = [max(len(c), len(v)) for c, v in zip(columns, values)]
    header = " | ".join(c.rjust(w) for c, w in zip(columns, widths))
    row = " | ".join(v.rjust(w) for v, w in zip(values, widths))
    rerank = f"on ({metrics['rerank_convention']})" if metrics["rerank"] else "off"
    lines = [header, "-" * len(header), row, f"(%; distance {metrics['distance']}, "
             f"re-ranking {rerank}; convention: {metrics['convention']})"]
    if "index" in metrics:
        lines.append(f"gallery index {metrics['index']['kind']} of {metrics['index']['size']}: {metrics['index']['note']}")
    if "bootstrap_ci" in metrics:
        ci = metrics["bootstrap_ci"]
        lines.append(f"{100 * ci['confidence']:g}% bootstrap CI over {ci['num_identities']} query identities: "
                     + ", ".join(f"{name} [{100 * ci[name][0]:.2f}, {100 * ci[name][1]:.2f}]"
                                 for name in ("R-1", "mAP")))
    return "\n".join(lines)


def per_query_path(metrics_path):
    """Where the per-query results of the metrics JSON `metrics_path` go: `per_query_<stem>.npz` beside it."""
    folder, name = os.path.split(os.fspath(metrics_path))
    return os.path.join(folder, f"per_query_{os.path.splitext(name)[0]}.npz")


def evaluate_features(
    query, gallery, *, distance="euclidean", rerank=False, mode="standard", max_rank=50, num_repeats=10, seed=0,
    rerank_convention="zhong2017", per_query_out=None,
):
    """Metrics of query/gallery `FeatureSet`s: distances, optional re-ranking, `evaluate_rank`, and the
    bootstrap interval of rank-1 and mAP; the per-query results are written to `per_query_out` (.npz) if given.

    Returns:
      dict: rank1/5/10/20 (those <= max_rank), mAP, mINP (floats in [0, 1]), bootstrap_ci
      (`evaluation.stats.bootstrap_ci`: "R-1"/"mAP" [lo, hi] fractions), cmc (list [max_rank]),
      num_valid_queries, num_queries (scored, distractors excluded), num_skipped_distractor_queries (query
      pid 0 or -1: skipped, see the module doc), num_gallery, feature_dim, convention, mode, distance,
      rerank, rerank_convention (the re-ranking's convention string, None without re-ranking).
    """
    query, num_distractors = without_distractors(query)
    distmat = pairwise_distance(query.features, gallery.features, metric=distance)
    if rerank:
        distmat = k_reciprocal_rerank(
            distmat,
            pairwise_distance(query.features, query.features, metric=distance),
            pairwise_distance(gallery.features, gallery.features, metric=distance),
            convention=rerank_convention,
        )
    result = evaluate_rank(
        distmat, query.pids, gallery.pids, query.camids, gallery.camids, max_rank=max_rank, mode=mode,
        num_repeats=num_repeats, seed=seed,
    )
    metrics = {f"rank{k}": float(result["cmc"][k - 1]) for k in REPORTED_RANKS if k <= max_rank}
    if per_query_out:
        atomic_io.write_npz(per_query_out, result["per_query"])
    metrics.update(
        mAP=result["mAP"], mINP=result["mINP"], bootstrap_ci=bootstrap_ci(result["per_query"]),
        cmc=[float(v) for v in result["cmc"]],
        num_valid_queries=result["num_valid_queries"], num_queries=result["num_queries"],
        num_skipped_distractor_queries=num_distractors,
        num_gallery=int(distmat.shape[1]), feature_dim=int(query.features.shape[1]),
        convention=result["convention"], mode=mode, distance=distance, rerank=bool(rerank),
        rerank_convention=RERANK_CONVENTIONS[rerank_convention] if rerank else None,
    )
    return metrics


def evaluate_run(
    run_dir=None, *, query_tfrecords, gallery_tfrecords=None, soft_mask_query_tfrecords=None,
    soft_mask_gallery_tfrecords=None, distance="euclidean", flip_average=False, rerank=False,
    mode="standard", max_rank=50, num_repeats=10, seed=0, batch_size=64, image_size=None, out_path=None,
    features_cache_dir=None, model=None, embed_fn=None, progress=True, rerank_convention="zhong2017",
    precision="float32", gallery_index=None, shortlist=100,
):
    """Evaluates a re-ID run on query/gallery TFRecords (or a gallery index) and writes the metrics JSON.

    Args:
      run_dir: re-ID training run (`config.json` + `checkpoints/`); loaded unless `model`/`embed_fn` given.
      query_tfrecords, gallery_tfrecords: shard folder, comma list or glob (see
        `feature_cache.resolve_tfrecords`).
      soft_mask_query_tfrecords, soft_mask_gallery_tfrecords: SBSGAN soft-mask images of the same files
        (DA-2S stream 1; required for DA-2S, and needed by an injected `embed_fn` reading them).
      distance: "euclidean" (plain L2) | "cosine".
      flip_average: average the features of each image and its mirror.
      rerank: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
      mode, max_rank, num_repeats, seed: see `evaluate_rank`.
      batch_size, image_size: evaluation batches; image_size (H, W) defaults to the model's input.
      out_path: where to write the metrics JSON (atomically); default `<run_dir>/metrics.json`, none if
        both are missing. The per-query results go beside it (`per_query_path`).
      features_cache_dir: folder caching query/gallery features (reused when the inputs match).
      model: an IDE/DA2S instance to use instead of loading `run_dir`.
      embed_fn: batch dict -> [B, D] features, instead of a model.
      progress: progress bars and the printed table.
      rerank_convention: "zhong2017" (the authors' code, default) | "bgshift_v1" (see evaluation/rerank.py).
      precision: compute precision of the model loaded from `run_dir` (a `core.precision` setting).
      gallery_index, shortlist: a `search.GalleryIndex` replacing the gallery TFRecords (which are then not
        read) and its distance `distance`, scored by `search_eval.evaluate_on_index` (no re-ranking);
        `shortlist` candidates per query if it is approximate.

    Returns:
      dict of JSON-able metrics: rank1/5/10/20, mAP, mINP, cmc (list), counts, conventions and settings.
    """
    # 1. The embedding: injected, or the model's (loaded from run_dir unless given).
    uses_soft_mask = soft_mask_query_tfrecords is not None
    checkpoint = tf.train.latest_checkpoint(loop.checkpoint_dir(run_dir)) if run_dir else None
    if embed_fn is None:
        model = model if model is not None else _load_run_model(run_dir, precision)
        embed_fn, uses_soft_mask = _model_embed_fn(model)
    if image_size is None:
        if model is None:
            raise ValueError("`image_size` (H, W) is required when `embed_fn` is injected without a model.")
        image_size = tuple(model.image_shape[:2])
    if uses_soft_mask and (soft_mask_query_tfrecords is None or soft_mask_gallery_tfrecords is None and gallery_index is None):
        raise ValueError(
            "DA-2S needs the soft-mask images of both query and gallery: pass soft_mask_query_tfrecords and "
            f"soft_mask_gallery_tfrecords. Received: {soft_mask_query_tfrecords!r}, {soft_mask_gallery_tfrecords!r}"
        )

    # 2. Query and gallery features (cached ones are reused only for the same weights, files and settings).
    extraction = dict(
        embed_fn=embed_fn, uses_soft_mask=uses_soft_mask, image_size=image_size, batch_size=batch_size,
        flip_average=flip_average, progress=progress, cache_dir=features_cache_dir,
        cache_id=[os.path.abspath(run_dir) if run_dir else None, checkpoint_identity(checkpoint),
                  _compute_policy(model)],
    )
    query, query_files = split_features("query", query_tfrecords, soft_mask_query_tfrecords, **extraction)
    # 3. Metrics and the per-query results, then the JSON (atomically) and the table.
    out_path = out_path or (os.path.join(run_dir, "metrics.json") if run_dir else None)
    per_query_out = per_query_path(out_path) if out_path else None
    gallery_files = None
    if gallery_index is None:
        gallery, gallery_files = split_features("gallery", gallery_tfrecords, soft_mask_gallery_tfrecords, **extraction)
    try:
        if gallery_index is not None:
            metrics = evaluate_on_index(query, gallery_index, mode=mode, max_rank=max_rank, shortlist=shortlist,
                                        per_query_out=per_query_out)
        else:
            metrics = evaluate_features(
                query, gallery, distance=distance, rerank=rerank, mode=mode, max_rank=max_rank,
                num_repeats=num_repeats, seed=seed, rerank_convention=rerank_convention, per_query_out=per_query_out,
            )
    except NoValidQueryError as error:
        against = f"gallery index of {gallery_index.size}" if gallery_index is not None else (
            f"gallery_tfrecords={gallery_tfrecords!r} ({len(gallery.pids)} images)")
        raise errors.DataError(f"nothing to score: query_tfrecords={query_tfrecords!r} ({len(query.pids)} images) "
                               f"against {against}: {error}") from error
    metrics.update(
        flip_average=bool(flip_average), model=type(model).__name__ if model is not None else "embed_fn",
        precision=_compute_policy(model), run_dir=run_dir, query_tfrecords=query_files, gallery_tfrecords=gallery_files,
    )
    if out_path:
        atomic_io.write_json(out_path, metrics)
    if progress:
        print(format_table(metrics))
        if out_path:
            print(f"wrote {out_path}")
    return metrics


def summarize_splits(per_split):
    """{metric: {mean, std, min, max}} over the metrics dicts of several splits, for
    `CUHK03_SUMMARY_METRICS`; std is the sample standard deviation (ddof=1; 0 for one split)."""
    summary = {}
    for name in CUHK03_SUMMARY_METRICS:
        values = np.array([metrics[name] for metrics in per_split], dtype=np.float64)
        summary[name] = {
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()),
        }
    return summary


def evaluate_cuhk03_classic(
    run_dir=None, *, tfrecords_root, soft_mask_root=None, out_path=None, features_cache_dir=None, model=None,
    embed_fn=None, progress=True, precision="float32", **settings,
):
    """CUHK03 classic: `evaluate_run` on every split folder of a `--cuhk03_split=all` build (query = gallery
    = the split's test images; use mode="cuhk03_sgs" for single-gallery-shot CMC), then the mean and spread.

    Args:
      tfrecords_root: the build's `out_dir` (holds split_00/ ... split_19/).
      soft_mask_root: the same layout of soft-mask images (DA-2S).
      out_path: the summary JSON (default `<run_dir>/metrics_cuhk03_classic.json`); each split's metrics
        are written next to it as `<stem>.<split folder>.json`.
      features_cache_dir: per-split caches in its `<split folder>/` subfolders.
      run_dir, model, embed_fn, progress, precision, **settings: as `evaluate_run` (the model is loaded once).

    Returns:
      dict: "splits" (folder names), "per_split" (each split's metrics), "summary" (`summarize_splits`),
      "num_splits", and the conventions of the first split.
    """
    split_dirs = cuhk03.classic_split_dirs(tfrecords_root)
    if embed_fn is None and model is None:
        model = _load_run_model(run_dir, precision)
    out_path = out_path or (os.path.join(run_dir, "metrics_cuhk03_classic.json") if run_dir else None)
    per_split = []
    for split_dir in split_dirs:
        name = os.path.basename(split_dir)
        soft_dir = os.path.join(soft_mask_root, name) if soft_mask_root else None
        per_split.append(evaluate_run(
            run_dir, query_tfrecords=split_dir, gallery_tfrecords=split_dir, soft_mask_query_tfrecords=soft_dir,
            soft_mask_gallery_tfrecords=soft_dir, model=model, embed_fn=embed_fn, progress=progress,
            out_path=f"{os.path.splitext(out_path)[0]}.{name}.json" if out_path else None,
            features_cache_dir=os.path.join(features_cache_dir, name) if features_cache_dir else None, **settings,
        ))
    first = per_split[0]
    result = {
        "splits": [os.path.basename(d) for d in split_dirs], "num_splits": len(split_dirs),
        "summary": summarize_splits(per_split), "per_split": per_split,
        **{key: first[key] for key in ("convention", "rerank_convention", "distance", "mode", "model")},
    }
    if out_path:
        atomic_io.write_json(out_path, result)
    if progress:
        for name, stats in result["summary"].items():
            print(f"{name:>7}: {100 * stats['mean']:.2f} +- {100 * stats['std']:.2f} "
                  f"(min {100 * stats['min']:.2f}, max {100 * stats['max']:.2f}) over {len(split_dirs)} splits")
        if out_path:
            print(f"wrote {out_path}")
    return result
