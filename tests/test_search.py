"""Tests of the gallery index (evaluation/search.py), `evaluate --index` scoring and the search entry point."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import top_k_matches
from bgshift_tf.evaluation.features import FeatureSet
from bgshift_tf.evaluation.gallery import index_top_k
from bgshift_tf.evaluation.run import evaluate_features
from bgshift_tf.evaluation.search import GalleryIndex, IndexSettings
from bgshift_tf.evaluation.search_eval import evaluate_on_index

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clustered(num_ids, per_id, dim, spread=0.6, seed=0, num_cameras=3):
    """FeatureSet of identity clusters: centre N(0, 1) + per-image N(0, spread^2); cameras cycle."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    features = (centres[pids - 1] + spread * rng.normal(size=(len(pids), dim))).astype(np.float32)
    camids = (np.arange(len(pids)) % num_cameras + 1).astype(np.int64)
    return FeatureSet(features, pids.astype(np.int64), camids, np.array([f"{i:05d}.jpg" for i in range(len(pids))]))


def split(feature_set, every=4):
    """(query, gallery): every `every`-th image is a query."""
    is_query = np.arange(len(feature_set.pids)) % every == 0
    return (FeatureSet(*(f[is_query] for f in feature_set)), FeatureSet(*(f[~is_query] for f in feature_set)))


def index_of(gallery, kind="flat", distance="cosine", **settings):
    return GalleryIndex.build(gallery.features, gallery.pids, gallery.camids, gallery.filenames, kind=kind,
                              distance=distance, settings=IndexSettings(**settings), model={"name": "m", "version": 3})


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_build_save_load_round_trip(tmp_path, kind):
    _, gallery = split(clustered(60, 8, 32))
    index = index_of(gallery, kind, pq_m=8, train_size=2000)
    queries = gallery.features[:5] + 0.01
    before = index.search(queries, 7)
    index.save(tmp_path / "index")
    with pytest.raises(FileExistsError, match="exists"):
        index.save(tmp_path / "index")
    loaded = GalleryIndex.load(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "metadata.json").read_text())
    assert meta["kind"] == kind and meta["dim"] == 32 and meta["size"] == len(gallery.pids)
    assert meta["normalization"] == "l2" and meta["model"] == {"name": "m", "version": 3}
    np.testing.assert_array_equal(loaded.pids, gallery.pids)
    np.testing.assert_array_equal(loaded.camids, gallery.camids)
    np.testing.assert_array_equal(loaded.paths, gallery.filenames)
    after = loaded.search(queries, 7)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-12)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # no temporary folder left


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_exact_index_search_equals_the_dense_ranking_with_the_junk_rule(distance):
    query, gallery = split(clustered(40, 6, 16, spread=1.0, seed=1))
    index = index_of(gallery, distance=distance)
    distances, rows = index.search(query.features, 10, query_pids=query.pids, query_camids=query.camids,
                                   exclude_junk=True)
    distmat = pairwise_distance(query.features, gallery.features, metric=distance)
    expected, _ = top_k_matches(distmat, query.pids, gallery.pids, query.camids, gallery.camids, k=10)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(distmat, expected, axis=1), atol=1e-9)
    junk = (gallery.pids[rows] == query.pids[:, None]) & (gallery.camids[rows] == query.camids[:, None])
    assert not junk.any()
    _, with_junk = index.search(query.features, 10)
    assert ((gallery.pids[with_junk] == query.pids[:, None]) & (gallery.camids[with_junk] == query.camids[:, None])).any()


@pytest.mark.parametrize("num_ids, per_id", [(40, 6), (3, 2)])  # (3, 2): fewer than 10 left -> -1 padding
def test_the_reports_ranked_lists_from_the_index_equal_the_dense_ones(num_ids, per_id):
    query, gallery = split(clustered(num_ids, per_id, 16, spread=1.0, seed=2), every=2)
    as_dict = lambda f: {"features": f.features, "pids": f.pids, "camids": f.camids}  # noqa: E731
    rows, correct, index = index_top_k(as_dict(query), as_dict(gallery), distance="cosine", k=10)
    distmat = pairwise_distance(query.features, gallery.features, metric="cosine")
    expected_rows, expected_correct = top_k_matches(distmat, query.pids, gallery.pids, query.camids, gallery.camids,
                                                    k=10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(correct, expected_correct)
    assert index["kind"] == "flat" and index["exact"] and index["size"] == len(gallery.pids)
    assert (num_ids * per_id < 20) == (rows == -1).any()


@pytest.mark.parametrize("distance,mode", [("cosine", "standard"), ("euclidean", "standard"),
                                           ("cosine", "market_official")])
def test_exact_index_evaluation_equals_the_dense_evaluation(monkeypatch, distance, mode):
    from bgshift_tf.evaluation import search_eval

    query, gallery = split(clustered(50, 6, 16, spread=1.2, seed=2))
    # A query without a true match outside its camera (invalid) and a distractor query.
    query = FeatureSet(np.concatenate([query.features, query.features[:2]]),
                       np.concatenate([query.pids, [999, 0]]), np.concatenate([query.camids, [1, 1]]),
                       np.concatenate([query.filenames, ["a.jpg", "b.jpg"]]))
    monkeypatch.setattr(search_eval, "CHUNK_ELEMENTS", 7 * len(gallery.pids))  # several chunks of 7 queries
    dense = evaluate_features(query, gallery, distance=distance, mode=mode)
    indexed = evaluate_on_index(query, index_of(gallery, distance=distance), mode=mode)
    for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
        assert indexed[key] == pytest.approx(dense[key], abs=1e-6), key
    np.testing.assert_allclose(indexed["cmc"], dense["cmc"], atol=1e-12)
    for key in ("num_valid_queries", "num_queries", "num_skipped_distractor_queries", "convention"):
        assert indexed[key] == dense[key], key
    assert indexed["bootstrap_ci"] == dense["bootstrap_ci"]
    assert indexed["index"]["exact"] and "equals the dense" in indexed["index"]["note"]


@pytest.mark.parametrize("kind,settings", [("hnsw", {"hnsw_m": 16, "ef_search": 64}),
                                           ("ivfpq", {"nprobe": 8, "shortlist": 50, "pq_m": 8})])
def test_approximate_index_recall_at_10_on_clustered_features(kind, settings):
    gallery = clustered(400, 10, 32, spread=0.5, seed=3)
    queries = clustered(400, 10, 32, spread=0.5, seed=3).features[::10] + 0.3 * np.random.default_rng(4).normal(
        size=(400, 32)).astype(np.float32)
    exact = index_of(gallery).search(queries, 10)[1]
    approximate = index_of(gallery, kind, **settings)
    found = approximate.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact)])
    assert recall >= 0.95, recall
    query = FeatureSet(queries, np.arange(1, 401), np.full(400, 9), np.array(["q"] * 400))
    metrics = evaluate_on_index(query, approximate, shortlist=50)
    exact_metrics = evaluate_on_index(query, index_of(gallery))
    assert not metrics["index"]["exact"] and "lower bound" in metrics["index"]["note"]
    assert metrics["mAP"] <= exact_metrics["mAP"] + 1e-9 and metrics["rank1"] == pytest.approx(exact_metrics["rank1"], abs=0.02)


def test_bad_inputs_name_the_culprit(tmp_path):
    _, gallery = split(clustered(10, 4, 8))
    index = index_of(gallery)
    with pytest.raises(ValueError, match=r"`queries` must be \[N >= 1, 8\].*shape \(2, 5\)"):
        index.search(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="`kind` must be one of"):
        index_of(gallery, kind="lsh")
    with pytest.raises(ValueError, match="all-zero feature row"):
        GalleryIndex.build(np.zeros((3, 4)), [1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="`pids` must have shape"):
        GalleryIndex.build(np.ones((3, 4)), [1, 2], [1, 1, 1])
    with pytest.raises(FileNotFoundError, match="not a gallery index folder"):
        GalleryIndex.load(tmp_path)
    query = FeatureSet(np.ones((2, 4), np.float32), np.array([1, 2]), np.array([1, 1]), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="dimension 4 but the index holds 8-d"):
        evaluate_on_index(query, index)


def test_search_entry_point_builds_and_queries_feature_shards(tmp_path):
    from bgshift_tf.core import atomic_io
    from bgshift_tf.data import schema, shards

    query, gallery = split(clustered(12, 4, 8, seed=5))
    folder = tmp_path / "features"
    for name, part in (("query", query), ("gallery", gallery)):
        path = folder / shards.shard_name("toy", name, 0, 1)
        folder.mkdir(exist_ok=True)
        import tensorflow as tf

        with tf.io.TFRecordWriter(str(path)) as writer:
            for feature, pid, camera, filename in zip(*part):
                writer.write(schema.serialize_feature_example(
                    {"pid": pid, "camera": camera, "filename": filename, "split": name, "domain_name": "toy"}, feature))
    atomic_io.write_json(folder / "manifest.json", {
        "schema_version": schema.SCHEMA_VERSION, "dataset": "toy", "content": "features", "feature_dim": 8,
        "model": {"name": "toy_embedder", "version": 1},
        "splits": {name: {"num_shards": 1, "num_examples": len(part.pids), "shards": [
            {"file": shards.shard_name("toy", name, 0, 1), "num_examples": len(part.pids), "complete": True}]}
            for name, part in (("query", query), ("gallery", gallery))}})
    run = lambda *args: subprocess.run([sys.executable, "-m", "bgshift_tf.search", *args], capture_output=True,
                                       text=True, timeout=120, cwd=REPO,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    built = run("build", f"--features={folder}", f"--out={tmp_path / 'index'}")
    assert built.returncode == 0, built.stderr[-2000:]
    out = tmp_path / "top.json"
    queried = run("query", f"--features={folder}", f"--index={tmp_path / 'index'}", "--k=3", "--exclude_junk",
                  f"--out={out}")
    assert queried.returncode == 0, queried.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["index"]["model"]["name"] == "toy_embedder" and len(result["queries"]) == len(query.pids)
    distmat = pairwise_distance(query.features, gallery.features, metric="cosine")
    expected, _ = top_k_matches(distmat, query.pids, gallery.pids, query.camids, gallery.camids, k=3)
    assert [[r["path"] for r in q["results"]] for q in result["queries"]] == gallery.filenames[expected].tolist()
    bad = run("query", f"--features={tmp_path / 'nowhere'}", f"--index={tmp_path / 'index'}")
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("search: error:") and "nowhere" in last, bad.stderr[-2000:]


def test_evaluate_run_on_an_index_equals_evaluate_run_on_the_gallery_tfrecords(tmp_path):
    from test_evaluate import GALLERY, QUERY, _mean_pixel, _write_split

    from bgshift_tf.evaluation.run import evaluate_run

    records = tmp_path / "records"
    _write_split(records, "query", QUERY)
    _write_split(records, "gallery", GALLERY)
    embed = lambda batch: np.concatenate([_mean_pixel(batch).numpy(), np.ones((len(batch["pid"]), 1))], axis=1)
    common = dict(query_tfrecords=str(records), embed_fn=embed, image_size=(32, 16), batch_size=4, progress=False)
    dense = evaluate_run(gallery_tfrecords=str(records), out_path=str(tmp_path / "dense.json"), **common)
    from bgshift_tf.evaluation.feature_cache import split_features  # the gallery features as evaluate_run has them

    gallery, _ = split_features("gallery", str(records), None, embed_fn=embed, uses_soft_mask=False,
                                image_size=(32, 16), batch_size=4, flip_average=False, progress=False,
                                cache_dir=None, cache_id=[])
    index = GalleryIndex.build(gallery.features, gallery.pids, gallery.camids, gallery.filenames,
                               distance="euclidean")
    indexed = evaluate_run(gallery_index=index, out_path=str(tmp_path / "index.json"), **common)
    assert dense["num_valid_queries"] == indexed["num_valid_queries"] == 3
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert indexed[key] == pytest.approx(dense[key], abs=1e-6), key
    assert indexed["gallery_tfrecords"] is None and indexed["index"]["kind"] == "flat"
    assert os.path.isfile(tmp_path / "per_query_index.json".replace(".json", ".npz"))
