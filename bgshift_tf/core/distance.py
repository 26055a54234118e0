"""Pairwise distance matrices between feature sets, computed in float64 row blocks.

- "euclidean": the plain (not squared) L2 distance ||x - y||, the paper's test metric (SPEC §3). Squaring
  would not change any ranking; the plain form keeps the numbers in feature units.
- "cosine": 1 - cos(x, y) in [0, 2]; features are L2-normalised first.

float64 accumulation: ||x||^2 + ||y||^2 - 2 x.y cancels badly in float32 for close pairs, and the
ranking (ties broken by gallery order) should not depend on rounding.
"""

import numpy as np

METRICS = ("euclidean", "cosine")


def _as_features(name, values):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [num_items, dim]. Received: shape {values.shape}")
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise ValueError(f"`{name}` holds NaN/Inf values (first in row {row}).")
    return values


def _l2_normalize(name, values):
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if len(zero_rows):
        raise ValueError(
            f"`{name}` has {len(zero_rows)} all-zero feature row(s) (first: row {zero_rows[0]}); the "
            f"cosine distance is undefined for them."
        )
    return values / norms


def pairwise_distance(x, y, metric="euclidean", chunk_rows=1024):
    """Distance matrix between rows of `x` [N, D] and `y` [M, D] -> float64 [N, M].

    Args:
      x, y: features (any real dtype), same dimension D.
      metric: "euclidean" (plain L2) | "cosine" (1 - cosine similarity).
      chunk_rows: rows of `x` per block (bounds the temporary memory to chunk_rows x M).
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {METRICS}. Received: metric={metric!r}")
    x, y = _as_features("x", x), _as_features("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same feature dimension. Received: shapes {x.shape} and {y.shape}"
        )
    if metric == "cosine":
        x, y = _l2_normalize("x", x), _l2_normalize("y", y)
    y_t = np.ascontiguousarray(y.T)
    y_sq = np.sum(y * y, axis=1)
    out = np.empty((x.shape[0], y.shape[0]), dtype=np.float64)
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start:start + chunk_rows]
        product = block @ y_t
        if metric == "cosine":
            out[start:start + len(block)] = 1.0 - product
        else:
            squared = np.sum(block * block, axis=1)[:, None] + y_sq[None, :] - 2.0 * product
            out[start:start + len(block)] = np.sqrt(np.maximum(squared, 0.0))
    return out
