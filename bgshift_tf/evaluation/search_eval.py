"""Scoring a query set against a gallery index (`evaluate --index`): the metrics of `core.rank`.

Queries are ranked in chunks of rows, so the dense [queries, gallery] matrix never exists whole: each chunk's
distances go to `rank.evaluate_rank` and the per-query results are joined (every aggregate is a mean over
queries). With an exact ("flat") index a chunk holds every gallery distance, computed in float64 as
`distance.pairwise_distance` does, so rank-1 and mAP equal the dense evaluation's. With an approximate
index each query sees only its `shortlist` candidates (exactly re-ranked); gallery items outside it rank
after them in gallery order, so a true match the index missed counts at the end of the list: metrics are
then a lower bound of the exact ones, and the result says so (`index.note`).

Distractor queries (pid 0 / -1) are skipped as in `run.evaluate_features`. The "cuhk03_sgs" mode samples the
gallery per query over the whole matrix and is not offered here.
"""


import numpy as np

from bgshift_tf.core import atomic_io
from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import NoValidQueryError, evaluate_rank
from bgshift_tf.evaluation.features import FeatureSet, without_distractors
from bgshift_tf.evaluation.search import candidate_distances, prepare
from bgshift_tf.evaluation.stats import bootstrap_ci

MODES = ("standard", "market_official")
REPORTED_RANKS = (1, 5, 10, 20)
# Gallery distances (float64) per chunk: 32M = 256 MB.
CHUNK_ELEMENTS = 32 * 2**20
_BEYOND_SHORTLIST = np.finfo(np.float64).max


def _valid_queries(query, gallery_index):
    """bool [Q]: the query has a gallery item of its pid from another camera (`rank.is_junk` is the rest)."""
    cameras = {}
    for pid, camera in zip(gallery_index.pids.tolist(), gallery_index.camids.tolist()):
        cameras.setdefault(pid, set()).add(camera)
    return np.array([bool(cameras.get(p, set()) - {c}) for p, c in zip(query.pids.tolist(), query.camids.tolist())],
                    dtype=bool)


def _chunk_distances(features, gallery_index, shortlist):
    """float64 [rows, G] distances of a chunk of queries; beyond an approximate index's shortlist: the maximum."""
    if gallery_index.exact:
        return pairwise_distance(features, gallery_index.vectors, metric=gallery_index.distance)
    rows = gallery_index.candidates(prepare(features, gallery_index.distance), shortlist)
    found = candidate_distances(features, gallery_index.vectors, rows, gallery_index.distance)
    distmat = np.full((len(features), gallery_index.size), _BEYOND_SHORTLIST)
    keep = rows >= 0
    distmat[np.nonzero(keep)[0], rows[keep]] = found[keep]
    return distmat


def _ranked_chunks(query, valid, gallery_index, *, mode, max_rank, shortlist):
    """Per-query arrays over the counted queries (`rank.evaluate_rank`'s per_query) and summed mINP."""
    chunk_rows = max(1, CHUNK_ELEMENTS // gallery_index.size)
    parts, inp_sum, convention = [], 0.0, None
    for start in range(0, len(query.pids), chunk_rows):
        rows = slice(start, start + chunk_rows)
        chunk_valid = valid[rows]
        pids = query.pids[rows]
        part = {"pid": pids.astype(np.int64), "ap": np.full(len(pids), np.nan),
                "first_match_rank": np.zeros(len(pids), np.int64), "rank1": np.zeros(len(pids)),
                "valid": chunk_valid.copy()}
        if chunk_valid.any():
            distmat = _chunk_distances(query.features[rows][chunk_valid], gallery_index, shortlist)
            result = evaluate_rank(distmat, pids[chunk_valid], gallery_index.pids, query.camids[rows][chunk_valid],
                                   gallery_index.camids, max_rank=max_rank, mode=mode)
            for key in ("ap", "first_match_rank", "rank1"):
                part[key][chunk_valid] = result["per_query"][key]
            inp_sum += result["mINP"] * result["num_valid_queries"]
            convention = result["convention"]
        parts.append(part if mode == "market_official" else {k: v[chunk_valid] for k, v in part.items()})
    per_query = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return per_query, inp_sum, convention


def evaluate_on_index(query, gallery_index, *, mode="standard", max_rank=50, shortlist=100, per_query_out=None):
    """Metrics of query `FeatureSet` against a `search.GalleryIndex`, keyed as `run.evaluate_features`'s.

    Args:
      shortlist: candidates per query of an approximate index (ignored by an exact one).
      per_query_out: where to write the per-query results (.npz), if given.
    Returns:
      dict: rank1/5/10/20, mAP, mINP, bootstrap_ci, cmc, counts, convention, mode, distance, rerank (False),
      and "index" {kind, exact, size, shortlist, model, note}.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES} with an index (cuhk03_sgs samples the dense matrix). "
                         f"Received: mode={mode!r}")
    if query.features.shape[1] != gallery_index.dim:
        raise ValueError(f"query features have dimension {query.features.shape[1]} but the index holds "
                         f"{gallery_index.dim}-d features (built from another model?)")
    query, num_distractors = without_distractors(query)
    valid = _valid_queries(query, gallery_index)
    if not valid.any():
        raise NoValidQueryError(f"No valid query: none of the {len(valid)} queries has a gallery item of its pid from "
                         "another camera in the index.")
    shortlist = max(int(shortlist), max_rank)
    per_query, inp_sum, convention = _ranked_chunks(query, valid, gallery_index, mode=mode, max_rank=max_rank,
                                                    shortlist=shortlist)
    counted_valid = per_query["valid"]
    first = per_query["first_match_rank"][counted_valid]
    hits = np.bincount(np.minimum(first, max_rank + 1) - 1, minlength=max_rank + 1)
    cmc = np.cumsum(hits[:max_rank]) / len(per_query["pid"])
    if per_query_out:
        atomic_io.write_npz(per_query_out, per_query)
    note = ("exact index: equals the dense evaluation" if gallery_index.exact else
            f"approximate index ({gallery_index.kind}): each query ranks its {shortlist} shortlisted candidates; "
            "true matches outside the shortlist rank after them, so rank-k and mAP are lower bounds of the exact")
    metrics = {f"rank{k}": float(cmc[k - 1]) for k in REPORTED_RANKS if k <= max_rank}
    metrics.update(
        mAP=float(np.mean(per_query["ap"][counted_valid])), mINP=inp_sum / int(valid.sum()),
        bootstrap_ci=bootstrap_ci(per_query), cmc=[float(v) for v in cmc], num_valid_queries=int(valid.sum()),
        num_queries=len(valid), num_skipped_distractor_queries=num_distractors, num_gallery=gallery_index.size,
        feature_dim=gallery_index.dim, convention=convention, mode=mode, distance=gallery_index.distance,
        rerank=False, rerank_convention=None,
        index={"kind": gallery_index.kind, "exact": gallery_index.exact, "size": gallery_index.size,
               "shortlist": None if gallery_index.exact else shortlist, "model": gallery_index.model, "note": note},
    )
    return metrics
