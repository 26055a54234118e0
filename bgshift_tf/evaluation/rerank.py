"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017). Pure numpy.

The N = Q + G items (queries then gallery) are re-described by their k-reciprocal neighbourhoods:

1. Original distance d(p, g): the given distances (convention "zhong2017": squared first), each item's
   distances divided by their maximum over all N items (so in [0, 1] and comparable across items).
2. N(p, k): the k + 1 first items of p's ranking (p itself normally first), ranked as a stable argsort:
   ties in item-index order. k-reciprocal set R(p, k) = {g in N(p, k): p in N(g, k)}.
3. Expansion (paper eq. 11): R*(p, k1) = R(p, k1) united with every R(q, round(k1/2)), q in R(p, k1),
   that shares more than 2/3 of its members with R(p, k1) ("bgshift_v1": at least 2/3).
4. Encoding (eq. 12): V_p[g] = exp(-d(p, g)) for g in R*(p, k1), else 0; each V_p scaled to sum 1.
5. Local query expansion (eq. 13): V_p <- mean of V_g over the k2 first items of p's ranking.
6. Jaccard distance (eq. 14): d_J(p, g) = 1 - sum_j min(V_p[j], V_g[j]) / sum_j max(V_p[j], V_g[j]).
7. Final distance (eq. 15): d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g)   (lambda = 0.3).

Conventions (`convention`; `CONVENTIONS` holds the string every re-ranked metric carries):
- "zhong2017" (default): what the authors' released function computes (also copied into torchreid's
  `utils/rerank.py` and fast-reid's `evaluation/rerank.py`) when given plain distances: it squares them
  before step 1, ranks the float32 values of step 1 (so float32 ties are ties), and expands with the
  strict rule `overlap > 2/3 * size` evaluated as that code does. Its ranking is numpy's default
  argsort, whose tie order is unspecified; here ties follow a stable argsort (item index).
- "bgshift_v1": this module before issue 15: distances as given, float64, rule `3 * overlap >= 2 * size`.
The two differ by up to ~0.1 in the final distances on ordinary features (BUILD_NOTES, "Re-ranking
convention").

Memory: the N x N distance matrix is never built. Rows are assembled in blocks of `chunk_rows` from the
three given matrices (two passes), the neighbourhood vectors are kept sparse (about k1 non-zeros per
item), and the Jaccard sums use an inverted index over the gallery's vectors. Peak memory is about
chunk_rows x N floats plus the Q x G output, so a few thousand items (and Market-1501's 19k) fit.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class _Convention:
    squared: bool  # square the given distances before the normalisation (ranked in float32)
    strict_expansion: bool  # 2/3 rule as `overlap > 2./3 * size` (else `3 * overlap >= 2 * size`)
    description: str


_CONVENTIONS = {
    "zhong2017": _Convention(
        True, True,
        "zhong2017 (authors' code, as in torchreid/fast-reid): distances squared, then divided by each item's "
        "maximum (float32 ranking, ties by item index); expansion when overlap > 2/3",
    ),
    "bgshift_v1": _Convention(
        False, False,
        "bgshift_v1: distances as given, divided by each item's maximum (float64); expansion when overlap >= 2/3",
    ),
}
CONVENTIONS = {name: convention.description for name, convention in _CONVENTIONS.items()}


def _check(name, values, shape):
    values = np.asarray(values, dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}. Received: shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"`{name}` holds NaN/Inf values.")
    return values


class _Rows:
    """Row blocks of the implicit normalised N x N matrix. Item i's row is column i of
    [[q_q, q_g], [q_g^T, g_g]] divided by its maximum, as the authors' code does (the same as the row for
    symmetric q_q / g_g; the columns keep its rounding when they are not exactly symmetric)."""

    def __init__(self, q_g_dist, q_q_dist, g_g_dist, chunk_rows, squared):
        self.q_g, self.q_q, self.g_g = q_g_dist, q_q_dist, g_g_dist
        self.num_q, self.num_g = q_g_dist.shape
        self.chunk_rows = chunk_rows
        self.squared = squared

    def blocks(self):
        """Yields (first item index, [rows, N] normalised distances: float32 when squared, else float64)."""
        num_q, num_n = self.num_q, self.num_q + self.num_g
        for start in range(0, num_n, self.chunk_rows):
            stop = min(start + self.chunk_rows, num_n)
            block = np.empty((stop - start, num_n))
            num_query_rows = max(0, min(stop, num_q) - start)
            if num_query_rows:
                block[:num_query_rows, :num_q] = self.q_q[:, start:start + num_query_rows].T
                block[:num_query_rows, num_q:] = self.q_g[start:start + num_query_rows]
            if num_query_rows < len(block):
                columns = slice(max(start, num_q) - num_q, stop - num_q)
                block[num_query_rows:, :num_q] = self.q_g[:, columns].T
                block[num_query_rows:, num_q:] = self.g_g[:, columns].T
            if self.squared:
                block = np.square(block, out=block).astype(np.float32)
            row_max = block.max(axis=1, keepdims=True)
            block /= np.where(row_max > 0, row_max, 1)
            yield start, block


def _nearest(block, k):
    """Indices [rows, k]: each row's first k items of a stable argsort (ties in index order)."""
    if k >= block.shape[1]:
        return np.argsort(block, axis=1, kind="stable")[:, :k]
    candidates = np.argpartition(block, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(block, candidates, axis=1)
    order = np.lexsort((candidates, values), axis=1)
    candidates = np.take_along_axis(candidates, order, axis=1)
    # argpartition picks any of the items tied with the k-th value; a stable sort takes the lowest indices.
    tied = np.flatnonzero((block <= values.max(axis=1, keepdims=True)).sum(axis=1) > k)
    if len(tied):
        candidates[tied] = np.argsort(block[tied], axis=1, kind="stable")[:, :k]
    return candidates


def _reciprocal_sets(neighbours, k):
    """R(p, k) for every item: list of int arrays (members of N(p, k) that have p in their N(., k))."""
    candidates = neighbours[:, :k + 1]
    back = neighbours[candidates, :k + 1]
    is_reciprocal = (back == np.arange(len(neighbours))[:, None, None]).any(axis=2)
    return [row[keep] for row, keep in zip(candidates, is_reciprocal)]


def _expanded_sets(neighbours, k1, half_k, strict):
    """R*(p, k1) of paper eq. 11, as sorted int arrays."""
    full = _reciprocal_sets(neighbours, k1)
    half = [set(members.tolist()) for members in _reciprocal_sets(neighbours, half_k)]
    expanded = []
    for members in full:
        members_set = set(members.tolist())
        union = set(members_set)
        for q in members_set:
            overlap, size = len(half[q] & members_set), len(half[q])
            if (overlap > 2.0 / 3 * size) if strict else (3 * overlap >= 2 * size):
                union |= half[q]
        expanded.append(np.array(sorted(union), dtype=np.int64))
    return expanded


def _row_entries(indptr, rows):
    """Entries of CSR `rows`: (index into `rows` of each entry, its position in `indices`/`data`)."""
    lengths = indptr[rows + 1] - indptr[rows]
    owner = np.repeat(np.arange(len(rows)), lengths)
    first_output = np.cumsum(lengths) - lengths
    positions = np.repeat(indptr[rows] - first_output, lengths) + np.arange(lengths.sum())
    return owner, positions


def _to_csr(rows, cols, values, num_rows, num_cols):
    """Sums duplicate (row, col) entries; returns CSR (indptr, indices, data) sorted by row then column."""
    keys, inverse = np.unique(rows * num_cols + cols, return_inverse=True)
    data = np.bincount(inverse, weights=values)
    indptr = np.searchsorted(keys // num_cols, np.arange(num_rows + 1))
    return indptr, keys % num_cols, data


def _check_parameters(k1, k2, lambda_value, convention):
    """The convention's rule; ValueError naming the parameter unless k1, k2, lambda_value are in range."""
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"`k1` must be an integer >= 1. Received: k1={k1!r}")
    if int(k2) != k2 or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"`k2` must be an integer in [1, k1 + 1 = {k1 + 1}]. Received: k2={k2!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"`lambda_value` must be in [0, 1]. Received: lambda_value={lambda_value!r}")
    if convention not in _CONVENTIONS:
        raise ValueError(f"`convention` must be one of {tuple(_CONVENTIONS)}. Received: convention={convention!r}")
    return _CONVENTIONS[convention]


def _jaccard_query_gallery(indptr, indices, data, num_q, num_n):
    """float64 [Q, G] Jaccard distances between the first `num_q` rows of the CSR matrix (indptr, indices,
    data) and its other rows, through an inverted index of the gallery rows:
    sum_j max(a_j, b_j) = sum(a) + sum(b) - sum_j min(a_j, b_j)."""
    num_g = num_n - num_q
    row_sums = np.bincount(np.repeat(np.arange(num_n), np.diff(indptr)), weights=data, minlength=num_n)
    gallery_owner, gallery_positions = _row_entries(indptr, np.arange(num_q, num_n))
    by_column = np.argsort(indices[gallery_positions], kind="stable")
    gallery_owner = gallery_owner[by_column]
    gallery_values = data[gallery_positions][by_column]
    column_ptr = np.searchsorted(indices[gallery_positions][by_column], np.arange(num_n + 1))
    jaccard = np.empty((num_q, num_g), dtype=np.float64)
    for i in range(num_q):
        values = data[indptr[i]:indptr[i + 1]]
        entry_of, entries = _row_entries(column_ptr, indices[indptr[i]:indptr[i + 1]])
        mins = np.minimum(values[entry_of], gallery_values[entries])
        min_sum = np.bincount(gallery_owner[entries], weights=mins, minlength=num_g)
        max_sum = row_sums[i] + row_sums[num_q:] - min_sum
        jaccard[i] = 1.0 - min_sum / np.where(max_sum > 0, max_sum, 1.0)
    return jaccard


def k_reciprocal_rerank(
    q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3, convention="zhong2017", chunk_rows=512
):
    """Re-ranked query x gallery distances (module docstring).

    Args:
      q_g_dist: [Q, G] query-gallery distances (smaller = more similar), e.g. Euclidean.
      q_q_dist: [Q, Q] query-query distances; g_g_dist: [G, G] gallery-gallery distances (same metric).
      k1: size of the k-reciprocal neighbourhood (paper: 20).
      k2: neighbours averaged by local query expansion (paper: 6; 1 disables it). 1 <= k2 <= k1 + 1.
      lambda_value: weight of the original distance in the final one, in [0, 1] (paper: 0.3).
      convention: "zhong2017" (the authors' code) | "bgshift_v1" (see the module docstring).
      chunk_rows: rows per block of the implicit N x N matrix (memory ~ chunk_rows x N float64).

    Returns:
      float64 [Q, G] re-ranked distances, in [0, 1].
    """
    q_g_dist = np.asarray(q_g_dist)
    if q_g_dist.ndim != 2:
        raise ValueError(f"`q_g_dist` must be 2-D [Q, G]. Received: shape {q_g_dist.shape}")
    num_q, num_g = q_g_dist.shape
    q_g_dist = _check("q_g_dist", q_g_dist, (num_q, num_g))
    q_q_dist = _check("q_q_dist", q_q_dist, (num_q, num_q))
    g_g_dist = _check("g_g_dist", g_g_dist, (num_g, num_g))
    rule = _check_parameters(k1, k2, lambda_value, convention)
    num_n = num_q + num_g
    half_k = min(int(np.around(k1 / 2.0)), num_n - 1)
    k1, k2 = min(int(k1), num_n - 1), min(int(k2), num_n)
    rows = _Rows(q_g_dist, q_q_dist, g_g_dist, int(chunk_rows), rule.squared)

    # 1. Pass one: each item's k1 + 1 nearest items (itself first) and the normalised q-g block.
    neighbours = np.empty((num_n, k1 + 1), dtype=np.int64)
    original = np.empty((num_q, num_g), dtype=np.float64)
    for start, block in rows.blocks():
        neighbours[start:start + len(block)] = _nearest(block, k1 + 1)
        if start < num_q:
            query_rows = block[: num_q - start]
            original[start:start + len(query_rows)] = query_rows[:, num_q:]

    # 2. Expanded k-reciprocal sets, then pass two: their Gaussian weights, each row scaled to sum 1.
    expanded = _expanded_sets(neighbours, k1, half_k, rule.strict_expansion)
    lengths = np.array([len(members) for members in expanded])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(expanded)
    data = np.empty(len(indices), dtype=np.float64)
    for start, block in rows.blocks():
        stop = start + len(block)
        owner = np.repeat(np.arange(len(block)), lengths[start:stop])
        span = slice(indptr[start], indptr[stop])
        weights = np.exp(-block[owner, indices[span]].astype(np.float64))
        data[span] = weights / np.bincount(owner, weights=weights, minlength=len(block))[owner]

    # 3. Local query expansion: average the vectors of the k2 nearest items.
    if k2 > 1:
        near = neighbours[:, :k2].reshape(-1)
        owner, positions = _row_entries(indptr, near)
        indptr, indices, data = _to_csr(
            owner // k2, indices[positions], data[positions] / k2, num_n, num_n
        )

    # 4. Jaccard distance of each query to each gallery item via an inverted index of gallery vectors:
    #    sum_j max(a_j, b_j) = sum(a) + sum(b) - sum_j min(a_j, b_j).
    jaccard = _jaccard_query_gallery(indptr, indices, data, num_q, num_n)

    # 5. Blend with the original distance (in place: the Q x G arrays dominate memory at Market scale).
    jaccard *= 1.0 - lambda_value
    original *= lambda_value
    jaccard += original
    return jaccard
