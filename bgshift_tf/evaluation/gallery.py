"""Feature shards -> a saved gallery index, and ranked lists for query features: the library of `search`.

`build_index` indexes one split of a feature shard folder (`data.feature_shards`, made by the batch feature
job) and saves it with the embedder's facts from the folder's manifest; `query_index` ranks every query of a
feature folder and returns JSON-able ranked lists (gallery pid, camera, path, distance per entry);
`index_top_k` ranks in-memory query features against an exact index of gallery features (the report's
ranked lists), as `core.rank.top_k_matches` does from a dense distance matrix.
"""

import os
import time

import numpy as np

from bgshift_tf.core import atomic_io
from bgshift_tf.data.feature_shards import read_feature_shards
from bgshift_tf.evaluation.search import GalleryIndex, IndexSettings


def build_index(features_dir, out_dir, *, split="gallery", kind="flat", distance="cosine", settings=None,
                overwrite=False):
    """Indexes `split` of the feature folder `features_dir` into the index folder `out_dir`.

    Returns:
      {"index": out_dir, "kind", "distance", "size", "dim", "build_seconds", "model"}.
    """
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"index folder {out_dir!r} exists; pass --overwrite to replace it")
    shards = read_feature_shards(features_dir, split)
    manifest = shards["manifest"]
    model = {**manifest.get("model", {}), "features_dir": os.path.abspath(features_dir), "split": split,
             "dataset": manifest.get("dataset")}
    start = time.perf_counter()
    index = GalleryIndex.build(shards["features"], shards["pids"], shards["camids"], shards["filenames"], kind=kind,
                               distance=distance, settings=settings or IndexSettings(), model=model)
    seconds = time.perf_counter() - start
    index.save(out_dir, overwrite=overwrite)
    return {"index": out_dir, "kind": kind, "distance": distance, "size": index.size, "dim": index.dim,
            "build_seconds": round(seconds, 3), "model": model}


def ranked_lists(gallery_index, distances, rows):
    """[[{"pid", "camera", "path", "distance"} per entry] per query] of `search`'s output (padding dropped)."""
    lists = []
    for query_distances, query_rows in zip(distances, rows):
        lists.append([{"pid": int(gallery_index.pids[r]), "camera": int(gallery_index.camids[r]),
                       "path": str(gallery_index.paths[r]), "distance": float(d)}
                      for d, r in zip(query_distances, query_rows) if r >= 0])
    return lists


def query_index(index_dir, features_dir, *, split="query", k=10, exclude_junk=False, out_path=None):
    """Top-k gallery entries for every query of a feature folder; written as JSON to `out_path` if given.

    Returns:
      {"index": {metadata}, "k", "exclude_junk", "queries": [{"pid", "camera", "path", "results": [...]}]}.
    """
    gallery_index = GalleryIndex.load(index_dir)
    queries = read_feature_shards(features_dir, split)
    distances, rows = gallery_index.search(queries["features"], k, query_pids=queries["pids"],
                                           query_camids=queries["camids"], exclude_junk=exclude_junk)
    result = {"index": gallery_index.metadata(), "k": k, "exclude_junk": bool(exclude_junk), "queries": [
        {"pid": int(pid), "camera": int(camera), "path": str(path), "results": ranked}
        for pid, camera, path, ranked in zip(queries["pids"], queries["camids"], queries["filenames"],
                                             ranked_lists(gallery_index, distances, rows))]}
    if out_path:
        atomic_io.write_json(out_path, result)
    return result


def index_top_k(query, gallery, *, distance="cosine", k=10):
    """Top-k gallery items per query from an exact ("flat") index of the gallery, junk excluded.

    Args:
      query, gallery: {"features" float [N, D], "pids" int [N], "camids" int [N]}.
    Returns:
      (rows int [Q, k] into the gallery, -1 padded; correct bool [Q, k]; the index's metadata).
    """
    index = GalleryIndex.build(gallery["features"], gallery["pids"], gallery["camids"], kind="flat",
                               distance=distance)
    _, rows = index.search(query["features"], k, query_pids=query["pids"], query_camids=query["camids"],
                           exclude_junk=True)
    correct = (rows >= 0) & (index.pids[np.maximum(rows, 0)] == np.asarray(query["pids"])[:, None])
    return rows, correct, index.metadata()
