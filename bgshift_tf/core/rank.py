"""Ranking metrics of person re-ID: CMC, mAP and mINP (SPEC §4). Pure numpy; the one owner of the metric.

Single query. For each query the gallery is ranked by ascending distance, ties broken by gallery order
(a stable sort). Gallery items with the query's pid AND camera are removed ("junk": the same view of the
same person says nothing about re-identification). A query with no remaining true match is invalid.

Conventions (`mode`; every result carries its `convention` string, so a number never loses its rule):

- "standard" (torchreid / fast-reid): invalid queries are skipped (counted in neither CMC nor mAP).
  CMC[k] = share of valid queries with a true match within the first k+1 ranks.
  AP = mean over the true matches of the precision at each match's rank: with the n true matches at
  ranks r_1 < ... < r_n (1-based, after junk removal), AP = (1/n) * sum_i i / r_i.
  mINP (Ye et al., TPAMI 2021) = mean over valid queries of n / r_n.
- "cuhk03_sgs" (CUHK03 classic, single-gallery-shot): CMC averaged over `num_repeats` samplings that keep
  ONE random gallery image per identity (drawn independently for every query, after junk removal,
  seeded by `seed`); AP and mINP as "standard" on the full list.
- "market_official" (Zheng et al.'s MATLAB `evaluation.m` + `compute_AP.m`, Market-1501):
  * gallery pid -1 (junk detections) is junk for every query (dropped before ranking);
  * AP by the trapezoid rule: walking the list without junk, at each position recall and precision are
    updated and `ap += (recall - old_recall) * (old_precision + precision) / 2`, with old_precision
    starting at 1. Recall moves only at true matches, so AP = (1/n) * sum_i (p_before_i + i / r_i) / 2
    where p_before_i = (i - 1) / (r_i - 1) is the precision one position before the i-th match (1 when
    r_i = 1);
  * CMC is averaged over ALL queries (`CMC = mean(CMC)`): a query without a true match counts as a miss;
  * mAP averages the valid queries only (the MATLAB code would give 0/0 = NaN for the others; Market-1501
    has none). mINP is not part of that code and follows "standard".

Per query (`per_query` of the result, the input of `evaluation.stats.bootstrap_ci`): the queries the CMC
counts (the valid ones; every query in "market_official"), in query order, with their pid, AP (NaN when
invalid), 1-based rank of the first true match on the full gallery (0 when invalid), rank-1 hit and
validity. The aggregates are these arrays' means: rank-1 = mean(rank1), mAP = mean(ap[valid]). In
"cuhk03_sgs" a query's rank1 is the share of its `num_repeats` gallery draws that put its drawn true
match first (its expected rank-1 hit under the protocol), so a bootstrap over queries resamples the query
identities only, with the gallery draws averaged out; rank-1 = mean(rank1) up to float rounding (the CMC
sums the hits of all repeats first).

Inputs are never modified. Distances may be float32 or float64 (ranked as given, no conversion).
"""

import numpy as np

MODES = ("standard", "cuhk03_sgs", "market_official")

CONVENTIONS = {
    "standard": "standard (torchreid/fast-reid): invalid queries skipped; AP = mean precision at each "
    "true match; CMC over valid queries",
    "cuhk03_sgs": "cuhk03_sgs: CMC by single-gallery-shot sampling ({num_repeats} repeats, seed {seed}); "
    "AP/mINP standard on the full gallery",
    "market_official": "market_official (Market-1501 MATLAB): trapezoid AP over valid queries; CMC over "
    "all queries; gallery pid -1 = junk",
}



class NoValidQueryError(ValueError):
    """No query has a true match left in the gallery after the junk rule: there is nothing to score.

    Callers that know where the query and gallery came from (`run.evaluate_run`) re-raise it naming them.
    """


# A query's same-pid gallery items are located by counting, one pass over the row per item; beyond this
# many items one stable argsort of the row is cheaper (a sort of ~16k floats costs ~150 such passes).
_SORT_THRESHOLD = 128
# Rows per block in the single-gallery-shot mode (bounds its [rows, gallery] work arrays).
_SGS_CHUNK_ROWS = 256


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, mode, num_repeats):
    """Returns the inputs as numpy arrays, or raises ValueError naming the argument at fault."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"`max_rank` must be an integer >= 1. Received: max_rank={max_rank!r}")
    if mode == "cuhk03_sgs" and (
        isinstance(num_repeats, bool) or not isinstance(num_repeats, (int, np.integer)) or num_repeats < 1
    ):
        raise ValueError(f"`num_repeats` must be an integer >= 1. Received: num_repeats={num_repeats!r}")
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(
            f"`distmat` must be 2-D [num_query, num_gallery]. Received: shape {distmat.shape}"
        )
    if not (np.issubdtype(distmat.dtype, np.floating) or np.issubdtype(distmat.dtype, np.integer)):
        raise ValueError(f"`distmat` must hold real numbers. Received: dtype {distmat.dtype}")
    if np.issubdtype(distmat.dtype, np.floating):
        finite = np.isfinite(distmat)
        if not finite.all():
            bad = np.argwhere(~finite)
            row, col = bad[0]
            raise ValueError(
                f"`distmat` holds {len(bad)} NaN/Inf value(s), first at [{row}, {col}] = "
                f"{distmat[row, col]}"
            )
    num_q, num_g = distmat.shape
    arrays = []
    for name, values, expected, axis in (
        ("q_pids", q_pids, num_q, "rows"),
        ("g_pids", g_pids, num_g, "columns"),
        ("q_camids", q_camids, num_q, "rows"),
        ("g_camids", g_camids, num_g, "columns"),
    ):
        values = np.asarray(values)
        if values.shape != (expected,):
            raise ValueError(
                f"`{name}` must have shape ({expected},) to match the {expected} {axis} of `distmat` "
                f"{distmat.shape}. Received: shape {values.shape}"
            )
        arrays.append(values)
    return (distmat, *arrays)


def is_junk(q_pids, q_camids, g_pids, g_camids):
    """The protocol's junk rule, its one definition: a gallery item with the query's pid AND camera.

    Broadcasts like numpy: a query's scalars against gallery arrays [G] -> bool [G], or query columns
    [Q, 1] against gallery rows [1, G] -> bool [Q, G].
    """
    return (g_pids == q_pids) & (g_camids == q_camids)


def _stable_positions(row, items):
    """0-based positions of gallery `items` in the stable ascending order of `row` ([G] distances).

    Item j comes after every item with a smaller distance and after equal-distance items of lower index,
    so its position is #{i < j: row[i] <= row[j]} + #{i > j: row[i] < row[j]}.
    """
    if len(items) > _SORT_THRESHOLD:
        order = np.argsort(row, kind="stable")
        positions = np.empty(len(row), dtype=np.int64)
        positions[order] = np.arange(len(row))
        return positions[items]
    positions = np.empty(len(items), dtype=np.int64)
    for n, j in enumerate(items):
        value = row[j]
        positions[n] = np.count_nonzero(row[:j] <= value) + np.count_nonzero(row[j + 1:] < value)
    return positions


def _true_match_ranks(distmat, q_pids, g_pids, q_camids, g_camids):
    """Per query: the sorted 1-based ranks (after junk removal) of its true matches, int64 [n_i]."""
    pid_values, pid_index = np.unique(g_pids, return_inverse=True)
    by_pid = np.argsort(pid_index, kind="stable")
    bounds = np.searchsorted(pid_index[by_pid], np.arange(len(pid_values) + 1))
    gallery_of_pid = {
        pid: by_pid[bounds[k]:bounds[k + 1]] for k, pid in enumerate(pid_values.tolist())
    }
    empty = np.zeros(0, dtype=np.int64)
    ranks = []
    for i in range(distmat.shape[0]):
        items = gallery_of_pid.get(q_pids[i], empty)
        same_camera = is_junk(q_pids[i], q_camids[i], g_pids[items], g_camids[items])
        if same_camera.all():
            ranks.append(empty)
            continue
        positions = _stable_positions(distmat[i], items)
        match_positions = np.sort(positions[~same_camera])
        junk_positions = np.sort(positions[same_camera])
        # Each junk item ahead of a match moves that match one rank up.
        ranks.append(match_positions + 1 - np.searchsorted(junk_positions, match_positions))
    return ranks


def _average_precision(ranks, trapezoid):
    """AP of one query from its sorted 1-based true-match ranks [n] (see the module docstring)."""
    hits = np.arange(1, len(ranks) + 1)
    precision = hits / ranks
    if not trapezoid:
        return float(precision.mean())
    before = np.where(ranks > 1, (hits - 1) / np.maximum(ranks - 1, 1), 1.0)
    return float(((before + precision) / 2).mean())


def _single_gallery_shot_cmc(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, num_repeats, seed):
    """(CMC [max_rank] of the CUHK03 classic protocol averaged over repeats and valid queries, int64
    [num_query] number of repeats in which each query's drawn true match is at rank 1).

    For each query and repeat one kept gallery image per identity is drawn uniformly; the query's rank
    is 1 + the number of drawn images of other identities ranked before its drawn true match.
    """
    num_q, num_g = distmat.shape
    _, gid = np.unique(g_pids, return_inverse=True)
    gid_order = np.argsort(gid, kind="stable")
    gid_starts = np.searchsorted(gid[gid_order], np.arange(gid.max() + 1))
    generators = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(num_repeats)]
    hits = np.zeros(max_rank + 1, dtype=np.float64)
    rank1_hits = np.zeros(num_q, dtype=np.int64)
    num_valid = 0
    for start in range(0, num_q, _SGS_CHUNK_ROWS):
        rows = slice(start, min(start + _SGS_CHUNK_ROWS, num_q))
        same_pid = g_pids[None, :] == q_pids[rows, None]
        keep = ~is_junk(q_pids[rows, None], q_camids[rows, None], g_pids[None, :], g_camids[None, :])
        match = same_pid & keep
        valid = match.any(axis=1)
        num_valid += np.count_nonzero(valid)
        order = np.argsort(distmat[rows], axis=1, kind="stable")
        positions = np.empty_like(order)
        np.put_along_axis(positions, order, np.arange(num_g)[None, :], axis=1)
        for generator in generators:
            # Distinct random keys per row; the largest kept key of each identity is its drawn image.
            keys = generator.permuted(np.broadcast_to(np.arange(num_g), order.shape), axis=1)
            keys = np.where(keep, keys, -1)
            best = np.maximum.reduceat(keys[:, gid_order], gid_starts, axis=1)
            drawn = keep & (keys == best[:, gid])
            match_position = np.where(drawn & match, positions, -1).max(axis=1)
            rank = 1 + np.count_nonzero(drawn & (positions < match_position[:, None]), axis=1)
            hits += np.bincount(np.minimum(rank[valid], max_rank + 1) - 1, minlength=max_rank + 1)
            rank1_hits[rows] += valid & (rank == 1)
    return np.cumsum(hits[:max_rank]) / (num_repeats * num_valid), rank1_hits


def evaluate_rank(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, *, mode="standard", num_repeats=10,
    seed=0,
):
    """CMC, mAP and mINP of a query x gallery distance matrix (conventions: module docstring).

    Args:
      distmat: [num_query, num_gallery] distances (smaller = more similar), finite.
      q_pids, q_camids: [num_query] int person ids and camera ids of the queries.
      g_pids, g_camids: [num_gallery] int person ids and camera ids of the gallery.
      max_rank: length of the returned CMC curve (>= 1; may exceed the gallery size).
      mode: "standard" | "cuhk03_sgs" | "market_official".
      num_repeats, seed: single-gallery-shot sampling ("cuhk03_sgs" only).

    Returns:
      dict: "cmc" float64 [max_rank] in [0, 1] (cmc[0] = rank-1), "mAP" and "mINP" floats in [0, 1],
      "num_valid_queries" int, "num_queries" int, "convention" str, "per_query" {"pid" int64, "ap"
      float64, "first_match_rank" int64, "rank1" float64, "valid" bool} arrays over the queries the CMC
      counts (module docstring).

    Raises:
      ValueError: bad shapes, NaN/Inf distances, max_rank < 1 or unknown mode; NoValidQueryError (a
        ValueError) when no query is valid (also for 0 queries or an empty gallery).
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, mode, num_repeats
    )
    if mode == "market_official":
        # Junk for every query = absent from every ranking; dropping the columns keeps the gallery order.
        kept = g_pids != -1
        if not kept.all():
            distmat, g_pids, g_camids = distmat[:, kept], g_pids[kept], g_camids[kept]
    ranks = _true_match_ranks(distmat, q_pids, g_pids, q_camids, g_camids)
    valid = np.array([len(r) > 0 for r in ranks])
    ranks = [r for r in ranks if len(r)]
    num_q = distmat.shape[0]
    if not ranks:
        raise NoValidQueryError(
            f"No valid query: none of the {num_q} queries has a gallery item with its pid from another "
            f"camera (`q_pids`/`g_pids`/`q_camids`/`g_camids` do not overlap as expected)."
        )
    trapezoid = mode == "market_official"
    average_precisions = np.array([_average_precision(r, trapezoid) for r in ranks])
    inverse_negative_penalties = np.array([len(r) / r[-1] for r in ranks])
    first_hits = np.array([r[0] for r in ranks])
    first_match_rank = np.zeros(num_q, dtype=np.int64)
    first_match_rank[valid] = first_hits
    if mode == "cuhk03_sgs":
        cmc, rank1_hits = _single_gallery_shot_cmc(
            distmat, q_pids, g_pids, q_camids, g_camids, max_rank, num_repeats, seed
        )
        rank1 = rank1_hits / num_repeats
        convention = CONVENTIONS[mode].format(num_repeats=num_repeats, seed=seed)
    else:
        hits = np.bincount(np.minimum(first_hits, max_rank + 1) - 1, minlength=max_rank + 1)
        cmc = np.cumsum(hits[:max_rank]) / (num_q if mode == "market_official" else len(ranks))
        rank1 = (first_match_rank == 1).astype(np.float64)
        convention = CONVENTIONS[mode]
    query_ap = np.full(num_q, np.nan)
    query_ap[valid] = average_precisions
    counted = np.ones(num_q, dtype=bool) if mode == "market_official" else valid
    return {
        "cmc": cmc.astype(np.float64),
        "mAP": float(average_precisions.mean()),
        "mINP": float(inverse_negative_penalties.mean()),
        "num_valid_queries": len(ranks),
        "num_queries": num_q,
        "convention": convention,
        "per_query": {
            "pid": q_pids[counted].astype(np.int64), "ap": query_ap[counted],
            "first_match_rank": first_match_rank[counted], "rank1": rank1[counted], "valid": valid[counted],
        },
    }


def top_k_matches(distmat, q_pids, g_pids, q_camids, g_camids, k: int = 10):
    """Top-k gallery items per query as `evaluate_rank` ranks them: junk (`is_junk`) removed, ties in
    gallery order (stable sort). For pictures of ranked lists.

    Args:
      distmat: float `[Q, G]` distances; q_pids/q_camids int `[Q]`; g_pids/g_camids int `[G]`.
      k: items per query (>= 1).
    Returns:
      (indices int `[Q, k]` into the gallery, correct bool `[Q, k]`); rows with fewer than k remaining
      gallery items are padded with index -1 / False.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, 1, "standard", 1
    )
    indices = np.full((len(q_pids), k), -1, dtype=np.int64)
    correct = np.zeros((len(q_pids), k), dtype=bool)
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        top = order[~is_junk(q_pids[q], q_camids[q], g_pids[order], g_camids[order])][:k]
        indices[q, : len(top)] = top
        correct[q, : len(top)] = g_pids[top] == q_pids[q]
    return indices, correct
