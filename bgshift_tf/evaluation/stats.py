"""The statistics of the experiments: t intervals over seeds, bootstrap intervals over query identities,
and the verdict of a paired comparison. Pure numpy (scipy for the t quantile); the one owner of this
arithmetic (`evaluation.claims` and the experiments tables call it).

- `t_interval`: Student t confidence interval of a mean over independent repeats (seeds), with the
  sample standard deviation (ddof=1): mean +- t_{(1+c)/2, n-1} * std / sqrt(n).
- `bootstrap_ci`: percentile interval of rank-1 and mAP of ONE evaluation, from the per-query results
  of `core.rank.evaluate_rank`. The resampled unit is the query identity: identities are drawn with
  replacement and every query of a drawn identity comes along (the queries of one person are not
  independent; resampling them one by one would make the interval too narrow). A resample's rank-1 is
  the mean `rank1` of its queries, its mAP the mean `ap` of its valid queries (the conventions of
  `evaluate_rank`, so the resample of every identity once is the reported number).
- `paired_difference`: per-seed differences higher - lower of two rows trained on the same seeds, their
  t interval and the verdict: "holds" when the interval is above 0, "reversed" when below, else
  "inconclusive" (always so with fewer than 2 seeds).
- `seed_query_interval` / `paired_seed_query_difference`: the interval of a mean over seeds AND queries
  (the study's parts: every seed tested on the same queries), from per-query values [seeds, queries].
  Two terms: the seeds' (t half-width of the per-seed means, t_{S-1}: training randomness, which also
  carries the seed-by-query interaction) and the queries' (normal half-width of the cluster-robust
  standard error of the seed-averaged per-query values, query identities as clusters: the finite test
  set, which the seed term cannot see since every seed meets the same queries). The combined half-width
  is sqrt(seed^2 + query^2); `dominant` names the larger term.
"""

import numpy as np
from scipy import stats as scipy_stats

BOOTSTRAP_UNIT = "query identity"
VERDICTS = ("holds", "reversed", "inconclusive")


def _check_confidence(confidence):
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")


def _finite_vector(values, name):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError(f"`{name}` must be a 1-D sequence of finite numbers. Received: {values.tolist()!r}")
    return values


def t_interval(values, confidence=0.95) -> dict:
    """Student t interval of the mean of `values` (one per seed).

    Returns:
      {"n", "mean", "std" (sample, ddof=1), "lo", "hi"}; with n < 2 std/lo/hi are None (no spread to
      estimate), with n = 0 the mean is None too.
    """
    _check_confidence(confidence)
    values = _finite_vector(values, "values")
    n = len(values)
    if n < 2:
        return {"n": n, "mean": float(values[0]) if n else None, "std": None, "lo": None, "hi": None}
    mean, std = float(values.mean()), float(values.std(ddof=1))
    half_width = float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / np.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "lo": mean - half_width, "hi": mean + half_width}


def _identity_sums(per_query):
    """Per identity: (rank-1 sum, query count, AP sum over valid queries, valid query count)."""
    pids = np.asarray(per_query["pid"])
    rank1 = np.asarray(per_query["rank1"], dtype=np.float64)
    valid = np.asarray(per_query["valid"], dtype=bool)
    ap = np.asarray(per_query["ap"], dtype=np.float64)
    if not (pids.ndim == 1 and len(pids) and rank1.shape == valid.shape == ap.shape == pids.shape):
        raise ValueError(
            "`per_query` must hold non-empty 1-D 'pid', 'rank1', 'valid' and 'ap' arrays of one length. "
            f"Received shapes: pid {pids.shape}, rank1 {rank1.shape}, valid {valid.shape}, ap {ap.shape}"
        )
    if not valid.any():
        raise ValueError(f"`per_query` has no valid query (all {len(pids)} 'valid' are False)")
    _, identity = np.unique(pids, return_inverse=True)
    return tuple(np.bincount(identity, weights=weights)
                 for weights in (rank1, np.ones_like(rank1), np.where(valid, ap, 0.0), valid.astype(np.float64)))


def bootstrap_samples(per_query, num_samples=1000, seed=0) -> dict:
    """{"R-1", "mAP"}: float64 [num_samples] of each identity resample (see the module doc), fractions.

    A resample whose drawn identities have no valid query (possible only in "market_official" mode,
    where invalid queries count in rank-1) has mAP NaN.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"`num_samples` must be an integer >= 1. Received: num_samples={num_samples!r}")
    rank1_sum, num_queries, ap_sum, num_valid = _identity_sums(per_query)
    num_identities = len(num_queries)
    rng = np.random.default_rng(seed)
    # How often each identity is drawn in each resample of `num_identities` draws with replacement.
    draws = rng.multinomial(num_identities, np.full(num_identities, 1.0 / num_identities), size=num_samples)
    draws = draws.astype(np.float64)
    valid_drawn = draws @ num_valid
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ap = np.where(valid_drawn > 0, (draws @ ap_sum) / valid_drawn, np.nan)
    return {"R-1": (draws @ rank1_sum) / (draws @ num_queries), "mAP": mean_ap}


def bootstrap_ci(per_query, num_samples=1000, seed=0, confidence=0.95) -> dict:
    """Percentile bootstrap interval of rank-1 and mAP over query identities (fractions).

    Args:
      per_query: `evaluate_rank(...)["per_query"]` (or the arrays saved from it): "pid", "rank1",
        "valid", "ap".
      num_samples: resamples; seed: their generator's seed.
      confidence: central probability of the interval.

    Returns:
      {"R-1": [lo, hi], "mAP": [lo, hi], "confidence", "num_samples", "seed", "unit": "query identity",
       "num_identities"}.
    """
    _check_confidence(confidence)
    samples = bootstrap_samples(per_query, num_samples=num_samples, seed=seed)
    tails = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
    interval = {name: [float(v) for v in np.nanquantile(values, tails)] for name, values in samples.items()}
    return {**interval, "confidence": confidence, "num_samples": int(num_samples), "seed": seed,
            "unit": BOOTSTRAP_UNIT, "num_identities": int(len(np.unique(np.asarray(per_query["pid"]))))}


def verdict(lo, hi) -> str:
    """"holds" if the interval of higher - lower is above 0, "reversed" if below, else "inconclusive"."""
    if lo is None or hi is None:
        return "inconclusive"
    if lo > 0:
        return "holds"
    if hi < 0:
        return "reversed"
    return "inconclusive"


def identity_standard_error(values, clusters) -> float:
    """Standard error of the mean of per-query `values` [Q] whose queries of one identity (`clusters` [Q])
    are not independent: the cluster-robust estimate sqrt(G / (G - 1) * sum_g r_g^2) / Q, r_g the sum of
    the residuals (value - mean) of identity g, G the number of identities (0 when G < 2)."""
    values = _finite_vector(values, "values")
    clusters = np.asarray(clusters)
    if clusters.shape != values.shape or not len(values):
        raise ValueError(f"`values` and `clusters` must be non-empty and of one length. Received: {len(values)} "
                         f"values, {clusters.shape} clusters")
    _, identity = np.unique(clusters, return_inverse=True)
    groups = int(identity.max()) + 1
    if groups < 2:
        return 0.0
    residual_sums = np.bincount(identity, weights=values - values.mean(), minlength=groups)
    return float(np.sqrt(groups / (groups - 1) * np.sum(residual_sums ** 2)) / len(values))


def seed_query_interval(per_query, clusters, confidence=0.95) -> dict:
    """Mean of per-query values `per_query` [S seeds, Q queries] (the same queries for every seed) and its
    interval over seeds and queries (module doc).

    Returns:
      {"n_seeds", "n_queries", "n_identities", "mean", "seed_half_width" (None with one seed),
       "query_half_width", "half_width", "lo", "hi" (None with one seed: the seeds' spread is unknown),
       "dominant": "seeds" | "queries" | None}.
    """
    _check_confidence(confidence)
    values = np.asarray(per_query, dtype=np.float64)
    if values.ndim != 2 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"`per_query` must be a finite [seeds, queries] array. Received shape {values.shape}")
    seeds = t_interval(values.mean(axis=1), confidence)
    z = float(scipy_stats.norm.ppf((1.0 + confidence) / 2.0))
    query_half = z * identity_standard_error(values.mean(axis=0), clusters)
    seed_half = None if seeds["lo"] is None else (seeds["hi"] - seeds["lo"]) / 2.0
    result = {"n_seeds": int(values.shape[0]), "n_queries": int(values.shape[1]),
              "n_identities": int(len(np.unique(np.asarray(clusters)))), "mean": float(values.mean()),
              "seed_half_width": seed_half, "query_half_width": query_half}
    if seed_half is None:
        return {**result, "half_width": None, "lo": None, "hi": None, "dominant": None}
    half = float(np.hypot(seed_half, query_half))
    return {**result, "half_width": half, "lo": result["mean"] - half, "hi": result["mean"] + half,
            "dominant": "seeds" if seed_half >= query_half else "queries"}


def paired_seed_query_difference(lower, higher, clusters, confidence=0.95) -> dict:
    """The claim "lower < higher" on per-query values [S, Q] of both sides (same seeds, same queries):
    `seed_query_interval` of higher - lower plus "verdict" (`verdict`) and "reason" (why inconclusive
    without an interval, else None)."""
    lower, higher = np.asarray(lower, dtype=np.float64), np.asarray(higher, dtype=np.float64)
    if lower.shape != higher.shape:
        raise ValueError(f"`lower` and `higher` must pair the same seeds and queries. Received shapes "
                         f"{lower.shape} and {higher.shape}")
    interval = seed_query_interval(higher - lower, clusters, confidence)
    reason = None if interval["lo"] is not None else f"{interval['n_seeds']} seed(s): no interval over seeds (needs >= 2)"
    return {**interval, "verdict": verdict(interval["lo"], interval["hi"]), "reason": reason}


def paired_difference(lower_values, higher_values, confidence=0.95) -> dict:
    """The claim "lower < higher" on paired per-seed values (seed i of both lists is the same seed).

    Returns:
      {"per_seed": [higher_i - lower_i], "n", "mean", "std", "lo", "hi" (`t_interval` of the
       differences), "verdict" (`verdict`), "reason" (why inconclusive without an interval, else None)}.
    """
    lower = _finite_vector(lower_values, "lower_values")
    higher = _finite_vector(higher_values, "higher_values")
    if lower.shape != higher.shape:
        raise ValueError(
            "`lower_values` and `higher_values` must pair one value per seed. Received: "
            f"{len(lower)} vs {len(higher)} values ({lower.tolist()} vs {higher.tolist()})"
        )
    differences = higher - lower
    interval = t_interval(differences, confidence)
    reason = None if interval["n"] >= 2 else f"{interval['n']} seed(s): no interval over seeds (needs >= 2)"
    return {"per_seed": [float(d) for d in differences], **interval,
            "verdict": verdict(interval["lo"], interval["hi"]), "reason": reason}
