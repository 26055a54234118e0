"""Gallery index and search with FAISS: an exact index for small galleries, an approximate one for large.

The distance is the evaluation's (`core.distance`): "cosine" (1 - cosine similarity; the features are
L2-normalised and searched by inner product, the default for search) or "euclidean" (plain L2 on the raw
features, the paper's test metric; FAISS searches squared L2, which ranks the same).

    kind    FAISS index                         candidates                      memory per item
    flat    IndexFlatIP / IndexFlatL2           every item (exact)              4 D bytes
    hnsw    IndexHNSWFlat (M links per node)    `ef_search` graph neighbours    4 D + 8 M bytes
    ivfpq   IndexIVFPQ under IndexRefineFlat    `shortlist` from `nprobe` lists 4 D + pq_m bytes

Every kind keeps the float32 vectors in a flat storage: the candidates FAISS returns are re-ranked exactly
in float64 (`distance.pairwise_distance`'s formulas) with ties in gallery order, so distances are in the
evaluation's units and an exact index ranks as the dense evaluation does. The junk rule (`rank.is_junk`:
same pid and camera as the query) is an option of `search`.

Saved as a folder (written to a temporary folder, then renamed):
    <path>/index.faiss     the FAISS index (faiss.write_index)
    <path>/gallery.npz     pids int64 [N], camids int64 [N], paths str [N]
    <path>/metadata.json   kind, distance, normalization, dim, size, settings, model (name, version, ...)
"""

import dataclasses
import json
import os
import shutil
import tempfile

import faiss
import numpy as np

from bgshift_tf.core import atomic_io
from bgshift_tf.core.distance import METRICS
from bgshift_tf.core.rank import is_junk

KINDS = ("flat", "hnsw", "ivfpq")
INDEX_FILE, GALLERY_FILE, METADATA_FILE = "index.faiss", "gallery.npz", "metadata.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """Build and search settings of the approximate kinds (ignored by "flat").

    hnsw_m, ef_construction, ef_search: HNSW links per node, build and search beam widths.
    nlist: IVF lists (0: 4 sqrt(N) rounded to a power of two, at most N / 39 so k-means has 39 points per
    list); pq_m: PQ sub-quantizers of 8 bits (0: D / 8; must divide D); nprobe: lists visited per query;
    shortlist: PQ candidates re-ranked exactly per query (at least k); train_size: k-means training sample.
    """

    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int = 0
    pq_m: int = 0
    nprobe: int = 16
    shortlist: int = 100
    train_size: int = 100_000

    def resolved(self, num_items, dim):
        """A copy with `nlist` and `pq_m` chosen for `num_items` vectors of `dim` (when 0)."""
        nlist = self.nlist or max(1, min(2 ** round(np.log2(4 * np.sqrt(num_items))), num_items // 39))
        pq_m = self.pq_m or max(1, dim // 8)
        if dim % pq_m:
            raise ValueError(f"`pq_m` must divide the feature dimension {dim}. Received: pq_m={pq_m}")
        return dataclasses.replace(self, nlist=int(nlist), pq_m=int(pq_m))


def _check_features(name, features, dim=None):
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] < 1 or (dim is not None and features.shape[1] != dim):
        expected = f"[N >= 1, {dim}]" if dim is not None else "[N >= 1, D]"
        raise ValueError(f"`{name}` must be {expected} features. Received: shape {features.shape}")
    features = np.ascontiguousarray(features, dtype=np.float32)
    if not np.isfinite(features).all():
        raise ValueError(f"`{name}` holds NaN/Inf values (first in row {int(np.argwhere(~np.isfinite(features))[0, 0])}).")
    return features


def prepare(features, distance):
    """float32 [N, D] as the index stores them: L2-normalised for "cosine", raw for "euclidean"."""
    if distance != "cosine":
        return features
    norms = np.linalg.norm(features.astype(np.float64), axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{int((norms == 0).sum())} all-zero feature row(s) (first: row "
                         f"{int(np.flatnonzero(norms[:, 0] == 0)[0])}): the cosine distance is undefined for them.")
    return (features / norms).astype(np.float32)


def _new_index(kind, dim, distance, settings):
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    if kind == "flat":
        return faiss.IndexFlat(dim, metric)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, metric)
        index.hnsw.efConstruction = settings.ef_construction
        return index
    quantizer = faiss.IndexFlat(dim, metric)
    ivfpq = faiss.IndexIVFPQ(quantizer, dim, settings.nlist, settings.pq_m, 8, metric)
    ivfpq.own_fields = True
    quantizer.this.disown()  # owned by the IVF index from here on
    refine = faiss.IndexRefineFlat(ivfpq)
    refine.own_fields = True
    ivfpq.this.disown()
    return refine


def candidate_distances(queries, vectors, candidates, distance):
    """float64 [Q, C] distances of each query [Q, D] to its candidate rows [Q, C] of `vectors` [N, D]
    (`distance.pairwise_distance`'s formulas; candidates -1 get +inf)."""
    queries = queries.astype(np.float64)
    gathered = vectors[np.maximum(candidates, 0)].astype(np.float64)
    if distance == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        gathered = gathered / np.linalg.norm(gathered, axis=2, keepdims=True)
        result = 1.0 - np.einsum("qd,qcd->qc", queries, gathered)
    else:
        squared = (np.sum(queries * queries, axis=1)[:, None] + np.sum(gathered * gathered, axis=2)
                   - 2.0 * np.einsum("qd,qcd->qc", queries, gathered))
        result = np.sqrt(np.maximum(squared, 0.0))
    return np.where(candidates >= 0, result, np.inf)


def order_candidates(distances, candidates):
    """(distances, candidates) [Q, C] sorted per row by ascending distance, ties by gallery index."""
    order = np.lexsort((np.where(candidates >= 0, candidates, np.iinfo(np.int64).max), distances), axis=1)
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(candidates, order, axis=1)


class GalleryIndex:
    """A FAISS index over gallery features with the gallery's pids, cameras and paths (see module doc).

    Build with `GalleryIndex.build(...)`, or `GalleryIndex.load(path)`; `search` and `save`.
    Attributes: kind, distance, dim, size, pids int64 [N], camids int64 [N], paths str [N], settings, model.
    """

    def __init__(self, index, *, kind, distance, pids, camids, paths, settings, model=None):
        self.index, self.kind, self.distance = index, kind, distance
        self.pids = np.asarray(pids, dtype=np.int64)
        self.camids = np.asarray(camids, dtype=np.int64)
        self.paths = np.asarray(paths, dtype=str)
        self.settings, self.model = settings, dict(model or {})
        self.dim, self.size = int(index.d), int(index.ntotal)
        self._apply_search_settings()

    @classmethod
    def build(cls, features, pids, camids, paths=None, *, kind="flat", distance="cosine", settings=None,
              model=None, seed=0):
        """Indexes `features` [N, D] with their pids [N], camids [N] and paths [N] (default: row numbers).

        Args:
          kind: "flat" (exact) | "hnsw" | "ivfpq" (see the module doc); distance: "cosine" | "euclidean".
          settings: `IndexSettings` (default ones); model: JSON-able facts of the embedder (name, version).
          seed: k-means seed and training sample of "ivfpq".
        """
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        if distance not in METRICS:
            raise ValueError(f"`distance` must be one of {METRICS}. Received: distance={distance!r}")
        features = prepare(_check_features("features", features), distance)
        size, dim = features.shape
        paths = np.arange(size).astype(str) if paths is None else paths
        for name, values in (("pids", pids), ("camids", camids), ("paths", paths)):
            if np.shape(values) != (size,):
                raise ValueError(f"`{name}` must have shape ({size},), one entry per feature row. "
                                 f"Received: shape {np.shape(values)}")
        settings = (settings or IndexSettings()).resolved(size, dim)
        index = _new_index(kind, dim, distance, settings)
        if kind == "ivfpq":
            rng = np.random.default_rng(seed)
            sample = features[np.sort(rng.choice(size, min(size, settings.train_size), replace=False))]
            faiss.extract_index_ivf(index).cp.seed = seed
            index.train(sample)
        index.add(features)
        return cls(index, kind=kind, distance=distance, pids=pids, camids=camids, paths=paths, settings=settings,
                   model=model)

    def _apply_search_settings(self):
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.settings.ef_search
        elif self.kind == "ivfpq":
            faiss.extract_index_ivf(self.index).nprobe = self.settings.nprobe

    def with_settings(self, **changes):
        """This index with other search settings (ef_search, nprobe, shortlist); the vectors are shared."""
        return GalleryIndex(self.index, kind=self.kind, distance=self.distance, pids=self.pids, camids=self.camids,
                            paths=self.paths, settings=dataclasses.replace(self.settings, **changes), model=self.model)

    @property
    def exact(self):
        return self.kind == "flat"

    @property
    def vectors(self):
        """float32 [N, D] view of the stored (prepared) vectors; no copy."""
        storage = self.index
        if self.kind == "hnsw":
            storage = faiss.downcast_index(self.index.storage)
        elif self.kind == "ivfpq":
            storage = faiss.downcast_index(self.index.refine_index)
        return faiss.rev_swig_ptr(storage.get_xb(), self.size * self.dim).reshape(self.size, self.dim)

    def candidates(self, queries, count):
        """int64 [Q, count] candidate rows per prepared query (-1 padded): FAISS's shortlist."""
        count = min(int(count), self.size)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.settings.ef_search, count)
            return self.index.search(queries, count)[1]
        if self.kind == "ivfpq":
            return self.index.base_index.search(queries, count)[1]
        return self.index.search(queries, count)[1]

    def _shortlist_size(self, k):
        if self.kind == "ivfpq":
            return max(k, self.settings.shortlist)
        return k

    def search(self, queries, k=10, *, query_pids=None, query_camids=None, exclude_junk=False):
        """Top-k gallery rows per query, exactly re-ranked: (distances float64 [Q, k], rows int64 [Q, k]).

        Rows are padded with (inf, -1) when fewer than k remain. With `exclude_junk`, gallery items with the
        query's pid and camera (`query_pids`, `query_camids` int [Q]) are removed before taking the top k.
        """
        queries = _check_features("queries", queries, self.dim)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
        if exclude_junk and (query_pids is None or query_camids is None):
            raise ValueError("`exclude_junk` needs `query_pids` and `query_camids`.")
        prepared = prepare(queries, self.distance)
        fetch = k
        while True:
            rows = self.candidates(prepared, self._shortlist_size(fetch))
            distances, rows = order_candidates(candidate_distances(queries, self.vectors, rows, self.distance), rows)
            if exclude_junk:
                junk = is_junk(np.asarray(query_pids)[:, None], np.asarray(query_camids)[:, None],
                               self.pids[np.maximum(rows, 0)], self.camids[np.maximum(rows, 0)]) & (rows >= 0)
                distances, rows = order_candidates(np.where(junk, np.inf, distances), np.where(junk, -1, rows))
            enough = (rows[:, :k] >= 0).all() or fetch >= self.size
            if enough or not exclude_junk:
                return _pad(distances[:, :k], rows[:, :k], k)
            fetch = min(2 * fetch, self.size)

    # === Saving and loading ===

    def metadata(self):
        return {"format_version": FORMAT_VERSION, "kind": self.kind, "distance": self.distance,
                "normalization": "l2" if self.distance == "cosine" else "none", "dim": self.dim, "size": self.size,
                "exact": self.exact, "settings": dataclasses.asdict(self.settings), "model": self.model}

    def save(self, path, overwrite=False):
        """Writes the index folder `path` (module doc) atomically. Returns `path`."""
        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"index folder {path!r} exists; pass overwrite=True (--overwrite) to replace it")
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        try:
            faiss.write_index(self.index, os.path.join(tmp, INDEX_FILE))
            np.savez(os.path.join(tmp, GALLERY_FILE), pids=self.pids, camids=self.camids, paths=self.paths)
            atomic_io.write_json(os.path.join(tmp, METADATA_FILE), self.metadata())
            os.chmod(tmp, 0o755)
            if os.path.exists(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path):
        """The index saved at `path`; ValueError / FileNotFoundError naming the folder when it is not one."""
        path = os.fspath(path)
        files = [os.path.join(path, name) for name in (INDEX_FILE, GALLERY_FILE, METADATA_FILE)]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(f"{path!r} is not a gallery index folder (no {os.path.basename(missing[0])}); "
                                    "build one with `python -m bgshift_tf.search build`")
        with open(files[2]) as f:
            meta = json.load(f)
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") not in KINDS:
            raise ValueError(f"index folder {path!r} has format_version={meta.get('format_version')!r}, "
                             f"kind={meta.get('kind')!r}; this code reads version {FORMAT_VERSION}: rebuild it")
        with np.load(files[1], allow_pickle=False) as gallery:
            pids, camids, paths = gallery["pids"], gallery["camids"], gallery["paths"]
        index = faiss.read_index(files[0])
        if index.ntotal != meta["size"] or index.d != meta["dim"] or len(pids) != index.ntotal:
            raise ValueError(f"index folder {path!r} is inconsistent: the index holds {index.ntotal} x {index.d}, "
                             f"metadata says {meta['size']} x {meta['dim']}, gallery.npz {len(pids)} rows; rebuild it")
        return cls(index, kind=meta["kind"], distance=meta["distance"], pids=pids, camids=camids, paths=paths,
                   settings=IndexSettings(**meta["settings"]), model=meta.get("model"))


def _pad(distances, rows, k):
    if rows.shape[1] == k:
        return distances, rows
    pad = k - rows.shape[1]
    return (np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf),
            np.pad(rows, ((0, 0), (0, pad)), constant_values=-1))
