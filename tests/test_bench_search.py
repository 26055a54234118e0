"""The bench's `search` section (benchmarks/search.py) on a tiny gallery: record keys, exact recall 1.0."""

import os

import numpy as np

from bgshift_tf.benchmarks import search

KEYS = {"index", "gallery_size", "dim", "recall_at_10", "qps_batch_1", "qps_batch_64", "memory_bytes",
        "build_seconds", "cpu"}


def _write_cache(path, num_ids=40, per_id=8, dim=64, seed=0):
    """A gallery feature cache shaped like `evaluate`'s: clustered non-negative features, a few distractors."""
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    features = np.abs(rng.normal(size=(num_ids, dim))[pids - 1] + 0.4 * rng.normal(size=(len(pids), dim)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, features=np.concatenate([features, rng.random((5, dim))]).astype(np.float32),
             pids=np.concatenate([pids, [0, 0, 0, -1, -1]]), camids=np.ones(len(pids) + 5, np.int64))
    return path


def test_quick_section_records(tmp_path):
    runs = tmp_path / "runs"
    cache = _write_cache(str(runs / "demo" / "eval" / "da2s" / "synduke_features" / "gallery_features.npz"))
    result = search.run(quick=True, sizes=(3000,), num_queries=100, runs_root=str(runs))
    assert result["spread"]["spread_source"] == f"evaluate feature cache {cache}"
    assert result["spread"]["num_ids"] == 40 and result["spread"]["num_images"] == 320  # distractors dropped
    assert result["spread"]["dim"] == 64 and 0 < result["spread"]["loo_rank1"] <= 1
    records = {r["index"]: r for r in result["records"]}
    assert set(records) == {"flat", "hnsw", "ivfpq"}
    for record in records.values():
        assert KEYS <= set(record) and record["gallery_size"] == 3000 and record["dim"] == 64
        assert record["qps_batch_1"] > 0 and record["qps_batch_64"] > 0 and record["memory_bytes"] > 3000 * 64 * 4
    assert records["flat"]["recall_at_10"] == 1.0
    for kind in ("hnsw", "ivfpq"):
        assert 0 < records[kind]["recall_at_10"] <= 1
        assert all(0 < point["recall_at_10"] <= 1 for point in records[kind]["sweep"])
    within, between = (result["synthetic_check"][k] for k in ("within_cosine_distance", "between_cosine_distance"))
    assert 0 < within < between


def test_measure_spread_and_synthesis_match():
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(1, 31), 10)
    real = np.abs(rng.normal(size=(30, 32))[pids - 1] + 0.3 * rng.normal(size=(300, 32)))
    model, facts = search.measure_spread(real, pids)
    assert facts["between_rank"] == 29 and facts["within_rank"] == 32
    features, synthetic_pids, centres = search.synthesize(model, 30, 10, seed=2)
    assert features.shape == (300, 32) and centres.shape == (30, 32)
    check = search._cosine_spread(features, synthetic_pids)
    assert abs(check["within_cosine_distance"] - facts["within_cosine_distance"]) < 0.3 * facts["within_cosine_distance"]
    assert search.recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3, 4]])) == 1 / 3
