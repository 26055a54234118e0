"""Benchmark of `evaluate_rank` at Market-1501 scale side by side with torchreid's evaluator, and of
k-reciprocal re-ranking at Market scale and against our transcription of the authors' function.

Market-1501 test set: 3,368 queries x 15,913 gallery images (750 test ids + distractors), 6 cameras.
The features are random but keep that pid/camera structure, so each query has its usual handful of true
matches and same-camera junk.

torchreid is an optional bench dependency (`pip install torchreid --no-deps`): only its metric module
`reid/metrics/rank.py` is loaded (numpy only; `import torchreid` itself pulls in torch, cv2, ...). It
uses its Cython `rank_cy` extension when that is compiled, else its Python loop; the output says which.
The PyPI sdist torchreid 0.2.5 ships no `rank_cy.pyx`, so from PyPI only the Python loop is available.
Without torchreid the comparison is skipped with that reason.
"""

import importlib.util
import multiprocessing
import os
import resource
import time
import warnings

import numpy as np

from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import evaluate_rank
from bgshift_tf.evaluation.rerank import k_reciprocal_rerank


def reference_evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Straightforward "standard" metric: per query, a full stable argsort and boolean masks.

    Kept as the readable definition the fast `evaluate_rank` is tested against. Same return keys
    (without "convention" and "per_query"); raises ValueError when no query is valid.
    """
    cmc_sum = np.zeros(max_rank)
    average_precisions, inverse_negative_penalties = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = (g_pids[order][keep] == q_pids[i]).astype(np.int64)
        if not matches.any():
            continue
        found = np.minimum(np.cumsum(matches), 1)
        padded = np.concatenate([found, np.ones(max(0, max_rank - len(found)))])
        cmc_sum += padded[:max_rank]
        num_matches = matches.sum()
        precision_at = np.cumsum(matches) / np.arange(1, len(matches) + 1)
        average_precisions.append((precision_at * matches).sum() / num_matches)
        last_match_rank = np.nonzero(matches)[0][-1] + 1
        inverse_negative_penalties.append(num_matches / last_match_rank)
    if not average_precisions:
        raise ValueError("No valid query.")
    num_valid = len(average_precisions)
    return {
        "cmc": cmc_sum / num_valid,
        "mAP": float(np.mean(average_precisions)),
        "mINP": float(np.mean(inverse_negative_penalties)),
        "num_valid_queries": num_valid,
    }


def transcribed_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """Our line-by-line re-typing of the authors' k-reciprocal re-ranking (Zhong et al., CVPR 2017;
    the function torchreid and fast-reid copy), dense N x N float32 as there, with one change: a stable
    argsort (the original's default argsort leaves the order of ties unspecified).

    Kept as the definition `evaluation.rerank` (convention "zhong2017") is tested and timed against.
    """
    num_q = q_g_dist.shape[0]
    dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(1.0 * dist / np.max(dist, axis=0))
    num_n = dist.shape[0]
    ranking = np.argsort(dist, axis=1, kind="stable").astype(np.int32)
    half_k = int(np.around(k1 / 2.0))

    def reciprocal(item, k):
        forward = ranking[item, :k + 1]
        backward = ranking[forward, :k + 1]
        return forward[np.where(backward == item)[0]]

    vectors = np.zeros_like(dist)
    for i in range(num_n):
        members = reciprocal(i, k1)
        expansion = members
        for candidate in members:
            candidate_members = reciprocal(candidate, half_k)
            if len(np.intersect1d(candidate_members, members)) > 2.0 / 3 * len(candidate_members):
                expansion = np.append(expansion, candidate_members)
        expansion = np.unique(expansion)
        weights = np.exp(-dist[i, expansion])
        vectors[i, expansion] = weights / np.sum(weights)
    if k2 != 1:
        vectors = np.stack([np.mean(vectors[ranking[i, :k2]], axis=0) for i in range(num_n)])
    holders = [np.where(vectors[:, j] != 0)[0] for j in range(num_n)]
    jaccard = np.zeros((num_q, num_n), dtype=np.float32)
    for i in range(num_q):
        min_sum = np.zeros(num_n, dtype=np.float32)
        for j in np.where(vectors[i] != 0)[0]:
            min_sum[holders[j]] += np.minimum(vectors[i, j], vectors[holders[j], j])
        jaccard[i] = 1 - min_sum / (2.0 - min_sum)
    final = jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:]


def market_like_features(num_query=3368, num_gallery=15913, num_ids=750, num_cameras=6, dim=64, seed=0):
    """Random features with Market-1501's pid/camera structure.

    Gallery: ~1/6 distractors (pid 0), the rest spread over `num_ids` ids and all cameras; each query is
    an id seen in the gallery with a random camera. Features = id centre + camera offset + noise, so
    rankings are neither trivial nor random.

    Returns:
      (q_features float64 [Q, dim], g_features [G, dim], q_pids, g_pids, q_camids, g_camids int64).
    """
    rng = np.random.default_rng(seed)
    num_distractors = num_gallery // 6
    g_pids = np.concatenate(
        [np.zeros(num_distractors, np.int64), rng.integers(1, num_ids + 1, num_gallery - num_distractors)]
    )
    g_camids = rng.integers(1, num_cameras + 1, num_gallery)
    q_pids = rng.choice(np.unique(g_pids[g_pids > 0]), num_query)
    q_camids = rng.integers(1, num_cameras + 1, num_query)
    centres = rng.normal(size=(num_ids + 1, dim))
    camera_offsets = 0.7 * rng.normal(size=(num_cameras + 1, dim))

    def features(pids, camids):
        noise = 1.2 * rng.normal(size=(len(pids), dim))
        centre = np.where((pids > 0)[:, None], centres[pids], rng.normal(size=(len(pids), dim)))
        return centre + camera_offsets[camids] + noise

    return features(q_pids, q_camids), features(g_pids, g_camids), q_pids, g_pids, q_camids, g_camids


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _torchreid_rank_module():
    """torchreid's metric module loaded from its file, or (None, reason it is unavailable)."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or spec.origin is None:
        return None, "torchreid is not installed (optional bench dependency)"
    root = os.path.dirname(spec.origin)
    paths = [os.path.join(root, *parts) for parts in (("reid", "metrics", "rank.py"), ("metrics", "rank.py"))]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
        return None, f"torchreid at {root!r} has no metrics/rank.py (looked for {paths})"
    module_spec = importlib.util.spec_from_file_location("torchreid_rank_for_bench", path)
    module = importlib.util.module_from_spec(module_spec)
    with warnings.catch_warnings():  # its "Cython evaluation is unavailable" warning: reported in the output
        warnings.simplefilter("ignore")
        module_spec.loader.exec_module(module)
    return module, path


def _compare_with_torchreid(distmat, q_pids, g_pids, q_camids, g_camids, ours):
    """torchreid's evaluate_rank on the same inputs: its time, speed ratio and agreement with `ours`."""
    module, where = _torchreid_rank_module()
    if module is None:
        return {"torchreid": f"skipped: {where}"}
    use_cython = bool(module.IS_CYTHON_AVAI)
    (cmc, mean_ap), seconds = _timed(
        module.evaluate_rank, distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, use_cython=use_cython
    )
    return {
        "torchreid": f"{'Cython rank_cy' if use_cython else 'Python (no compiled rank_cy)'} evaluator from {where}",
        "torchreid_seconds": round(seconds, 3),
        "speedup_vs_torchreid": round(seconds / ours["seconds"], 2),
        # torchreid's CMC is float32 (its sum of hits divided in float32); its mAP is float64.
        "torchreid_cmc_equal_in_float32": bool(
            np.array_equal(np.asarray(cmc, np.float32), ours["cmc"].astype(np.float32))
        ),
        "torchreid_mAP_abs_difference": abs(float(mean_ap) - ours["mAP"]),
    }


def _market_rerank(sizes, queue):
    """Child process: re-ranks Market-scale features; puts (seconds, peak RSS MB, input MB) on `queue`."""
    q_features, g_features = market_like_features(**sizes, seed=2)[:2]
    distances = (
        pairwise_distance(q_features, g_features),
        pairwise_distance(q_features, q_features),
        pairwise_distance(g_features, g_features),
    )
    _, seconds = _timed(k_reciprocal_rerank, *distances)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    queue.put((seconds, peak_kb / 1024, sum(d.nbytes for d in distances) / 2**20))


def _rerank_at_market_scale(sizes):
    """Re-ranking time and peak memory, in a fresh process so the peak is re-ranking's own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_market_rerank, args=(sizes, queue))
    child.start()
    seconds, peak_mb, input_mb = queue.get()
    child.join()
    return {
        "rerank_market_size": f"{sizes['num_query']} + {sizes['num_gallery']}",
        "rerank_market_seconds": round(seconds, 2),
        "rerank_market_peak_rss_mb": round(peak_mb),
        "rerank_market_input_distances_mb": round(input_mb),
        "rerank_market_note": "peak RSS of a fresh process holding the three float64 input matrices",
    }


def _rerank_against_transcription(sizes):
    """The fast re-ranking and `transcribed_rerank` on the same distances: times and max difference."""
    rq, rg, rq_pids, rg_pids, rq_camids, rg_camids = market_like_features(**sizes, seed=1)
    distances = (pairwise_distance(rq, rg), pairwise_distance(rq, rq), pairwise_distance(rg, rg))
    reranked, seconds = _timed(k_reciprocal_rerank, *distances)
    transcribed, transcription_seconds = _timed(transcribed_rerank, *distances)
    # The full order differs wherever two distances are closer than the transcription's float32 rounding.
    top10 = np.argsort(reranked, axis=1, kind="stable")[:, :10]
    same_top10 = top10 == np.argsort(transcribed, axis=1, kind="stable")[:, :10]
    labels = (rq_pids, rg_pids, rq_camids, rg_camids)
    map_before, map_after, map_transcribed = (
        evaluate_rank(d, *labels)["mAP"] for d in (distances[0], reranked, transcribed)
    )
    return {
        "rerank_size": f"{len(rq)} x {len(rg)}",
        "rerank_seconds": round(seconds, 3),
        "transcription_seconds": round(transcription_seconds, 3),
        "rerank_speedup_vs_transcription": round(transcription_seconds / seconds, 2),
        "rerank_max_abs_difference_to_transcription": float(np.abs(reranked - transcribed).max()),
        "rerank_share_of_queries_same_top10": float(same_top10.all(axis=1).mean()),
        "rerank_mAP_abs_difference_to_transcription": abs(map_after - map_transcribed),
        "rerank_mAP_before_after": [round(map_before, 4), round(map_after, 4)],
    }


def run(quick: bool = False) -> dict:
    """Times `evaluate_rank` ("standard") at Market scale next to torchreid's evaluator (checked equal),
    checks it against `reference_evaluate_rank` on a subset of queries, re-ranks at Market scale (time,
    peak memory) and compares re-ranking with the transcription at 1,000 x 4,000.

    quick=True: 300 x 1,500 ranking, 100 x 400 re-ranking, no Market-scale re-ranking (a smoke test).
    """
    sizes = dict(num_query=300, num_gallery=1500, num_ids=100) if quick else {}
    q_features, g_features, q_pids, g_pids, q_camids, g_camids = market_like_features(**sizes)
    distmat = pairwise_distance(q_features, g_features)
    num_q = distmat.shape[0]
    fast, fast_seconds = _timed(evaluate_rank, distmat, q_pids, g_pids, q_camids, g_camids)

    rows = slice(0, min(num_q, 100 if quick else 500))
    reference = reference_evaluate_rank(distmat[rows], q_pids[rows], g_pids, q_camids[rows], g_camids)
    fast_subset = evaluate_rank(distmat[rows], q_pids[rows], g_pids, q_camids[rows], g_camids)
    results = {
        "num_query": num_q,
        "num_gallery": distmat.shape[1],
        "evaluate_rank_seconds": round(fast_seconds, 3),
        "subset_max_abs_difference": max(
            float(np.abs(fast_subset["cmc"] - reference["cmc"]).max()),
            abs(fast_subset["mAP"] - reference["mAP"]),
            abs(fast_subset["mINP"] - reference["mINP"]),
        ),
        "subset_num_valid_queries_equal": fast_subset["num_valid_queries"] == reference["num_valid_queries"],
        "rank1": float(fast["cmc"][0]),
        "mAP": fast["mAP"],
    }
    results.update(_compare_with_torchreid(
        distmat, q_pids, g_pids, q_camids, g_camids, dict(seconds=fast_seconds, cmc=fast["cmc"], mAP=fast["mAP"])
    ))
    results.update(_rerank_against_transcription(
        dict(num_query=100, num_gallery=400, num_ids=40) if quick else dict(
            num_query=1000, num_gallery=4000, num_ids=200
        )
    ))
    if not quick:
        results.update(_rerank_at_market_scale(dict(num_query=3368, num_gallery=15913, num_ids=750)))
    return results
