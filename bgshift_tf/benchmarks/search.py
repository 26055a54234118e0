"""Gallery search benchmark: build time, memory, queries/s and recall@10 of every index kind of
`evaluation.search` (flat = exact, HNSW, IVF-PQ + exact re-ranking) on large synthetic galleries.

`run(quick=False) -> dict`: one record per index kind and gallery size (`records`) with the keys `index`,
`gallery_size`, `dim`, `recall_at_10`, `qps_batch_1`, `qps_batch_64`, `memory_bytes`, `build_seconds`, plus
the settings and the `cpu` model. Gallery sizes 100k and 1M (quick: 20k); `num_queries` queries (quick: 200).

Features. Synthetic, of the embedder's dimension, with re-ID structure measured on REAL embedder features
(`measure_spread`), not uniform noise: per identity a centre drawn from the measured between-identity
covariance (of the identities' mean L2-normalised features), per image that centre plus a residual drawn from
the measured within-identity covariance; `IMAGES_PER_ID` images per identity (Market-1501's gallery has
~21). The real features are, in order of preference (`spread_source` in the result says which):
  1. a feature cache of an `evaluate` run of the demo (`runs/demo/**/gallery_features.npz`), else of any
     other run under `runs/` (DA-2S features preferred: the demo's embedder);
  2. features of unseen identities from a DA-2S (small DenseNet, 64x32; stream 1 the exactly masked image
     standing in for the soft mask) trained here for `train_steps` steps on the synthetic world rendered in
     memory (`synthetic.render`); its leave-one-out rank-1 on those identities is recorded to show the
     features carry identity. A seeded untrained network is never used.
Covariances estimated from K identities have rank <= K - 1; the eigenvalues beyond the estimate's rank are
set to its smallest measured one (recorded as `*_rank`), so synthetic identities do not all lie in a
(K - 1)-dimensional subspace. `synthetic_check` compares the mean within- and between-identity cosine
distances of the synthetic gallery to the real ones.

Measurement. Queries are new images of gallery identities. Every kind is timed through
`GalleryIndex.search` (FAISS candidates + the exact float64 re-ranking the product serves), FAISS on
`threads` OpenMP threads (the usable cores). recall_at_10: mean over queries of |top-10 ∩ exact top-10| / 10,
the exact lists from the flat index of the same gallery in the same run. qps_batch_1: queries one at a time
for at least `min_seconds` (>= 20 queries); qps_batch_64: all queries in batches of 64, best of `repeats`
passes. memory_bytes: the length of `faiss.serialize_index` of the index (its vectors, codes, links and
lists: what it holds in memory, without allocator slack); `rss_growth_bytes` is the process's resident-set
growth over the build, for comparison. `sweep`: recall and qps_batch_64 of the approximate kinds at other
search settings on the same built index (ef_search / nprobe), the trade-off around the chosen setting.

Settings (chosen for 1M x 256-d on 2 cores: recall@10 >= 0.95 at >= 1,000 queries/s at batch 64, memory
<= 2 GB, build <= 10 min; see BUILD_NOTES' "Gallery search" for the measured run):
  hnsw   M=16 links, ef_construction=64, ef_search=96: 1M x 256-d = 1.02 GB vectors + 0.13 GB links
  ivfpq  nlist 4 sqrt(N) (4096 at 1M; k-means on 131,072 vectors), 32 x 8-bit PQ, nprobe=64, shortlist=100
         re-ranked exactly from the flat float32 copy: 1.02 GB vectors + 32 MB codes + 8 MB ids
Measured at 50k x 256-d under load (spread of a 300-step DA-2S): hnsw recall 0.9995 at ef_search 96;
ivfpq (nlist 1024) 0.96 / 0.99 at nprobe 32 / 64 with a shortlist of 100 (a shortlist of 200 gained <= 0.01
and halved queries/s). More lists at 1M make a fixed nprobe cover less of the gallery, hence nprobe 64.
`quick` trains 30 steps only: its features are nearly collapsed (recall of ivfpq is then far lower), a smoke
run of the code path, not a measurement.
"""

import glob
import os
import time

import faiss
import numpy as np

from bgshift_tf.evaluation.search import GalleryIndex, IndexSettings
from bgshift_tf.workflow.provenance import cpu_model

SIZES, QUICK_SIZES = (100_000, 1_000_000), (20_000,)
KINDS = ("flat", "hnsw", "ivfpq")
SETTINGS = {"flat": IndexSettings(),
            "hnsw": IndexSettings(hnsw_m=16, ef_construction=64, ef_search=96),
            "ivfpq": IndexSettings(nprobe=64, shortlist=100, train_size=131_072)}
SWEEPS = {"hnsw": ("ef_search", (32, 64, 96, 128, 192)), "ivfpq": ("nprobe", (16, 32, 64, 128))}
IMAGES_PER_ID = 20
K = 10
TRAIN = dict(num_ids=64, test_ids=48, images_per_id=8, batch_size=32, image_size=(64, 32))


# === Real features and their spread ===


def _cached_run_features(runs_root):
    """(path, features, pids) of the largest gallery feature cache of an evaluate run, the demo's first and
    DA-2S ones preferred; None when there is none."""
    for pattern in ("demo/**/gallery_features.npz", "*/**/gallery_features.npz"):
        paths = sorted(glob.glob(os.path.join(runs_root, pattern), recursive=True))
        if not paths:
            continue
        preferred = [p for p in paths if "da2s" in p.lower()] or paths
        best = None
        for path in preferred:
            with np.load(path, allow_pickle=False) as cached:
                features, pids = cached["features"], cached["pids"]
            keep = pids > 0  # distractors (0) and junk (-1) have no identity
            if best is None or keep.sum() > len(best[2]):
                best = (path, features[keep], pids[keep])
        return best
    return None


def _render_split(rng, num_ids, images_per_id, cameras, config):
    # Imported here: the synthetic world (TensorFlow) only when features are trained here.
    from bgshift_tf.data.synthetic.people import sample_identity
    from bgshift_tf.data.synthetic.render import render_image

    images, masks, labels = [], [], []
    for label in range(num_ids):
        identity = sample_identity(rng, config)
        for _ in range(images_per_id):
            image, exact, _ = render_image(rng, identity, cameras[int(rng.integers(len(cameras)))], config)
            images.append(image)
            masks.append(exact)
            labels.append(label)
    images = np.stack(images).astype(np.float32) / 127.5 - 1.0
    masks = np.stack(masks)[..., None].astype(np.float32)
    return images, (images + 1.0) * masks - 1.0, np.array(labels)


def trained_features(train_steps, seed=0):
    """(features [N, D] of unseen identities, pids [N], facts) from a DA-2S trained `train_steps` steps here."""
    # Imported here (as in `_render_split`): TensorFlow and the synthetic world only without cached features.
    import tensorflow as tf

    from bgshift_tf.data.synthetic.scenes import make_camera
    from bgshift_tf.data.synthetic.world import resolve_config
    from bgshift_tf.training import reid as reid_training

    height, width = TRAIN["image_size"]
    config = resolve_config("study", image_height=height, image_width=width)
    rng = np.random.default_rng(seed)
    cameras = [make_camera(rng, "synmarket", c, height, width) for c in range(1, 7)]
    start = time.perf_counter()
    train = _render_split(rng, TRAIN["num_ids"], TRAIN["images_per_id"], cameras, config)
    test = _render_split(rng, TRAIN["test_ids"], TRAIN["images_per_id"], cameras, config)
    render_seconds = time.perf_counter() - start
    tf.keras.utils.set_random_seed(seed)
    model = reid_training.build_reid_model({**reid_training.DEFAULT_CONFIG, "model": "da2s", "backbone": "densenet_small",
                                            "image_height": height, "image_width": width}, TRAIN["num_ids"])
    batch = TRAIN["batch_size"]
    optimizer = reid_training.make_optimizer(0.1, 0.01, decay_step=max(1, 2 * train_steps // 3))
    step = tf.function(reid_training.make_train_step(model, optimizer, batch))
    start, losses = time.perf_counter(), []
    for number in range(train_steps):
        chosen = rng.choice(len(train[2]), batch, replace=False)
        out = step({"stream1": train[1][chosen], "stream2": train[0][chosen], "label": train[2][chosen]})
        losses.append(float(out["loss"]))
    train_seconds = time.perf_counter() - start
    embed = tf.function(lambda s1, s2: model.embed((s1, s2), training=False))
    features = np.concatenate([embed(test[1][i:i + 64], test[0][i:i + 64]).numpy() for i in range(0, len(test[2]), 64)])
    facts = {"model": "DA-2S, densenet_small, 64x32, float32, random init", "train_steps": train_steps,
             "train_ids": TRAIN["num_ids"], "batch_size": batch, "first_loss": round(losses[0], 4) if losses else None,
             "last_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
             "render_seconds": round(render_seconds, 1), "train_seconds": round(train_seconds, 1)}
    return features, test[2] + 1, facts


def _normalised(features):
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _cosine_spread(features, pids):
    """Mean cosine distance within identities (over pairs) and between identities (random pairs)."""
    unit = _normalised(features)
    same = pids[:, None] == pids[None, :]
    distances = 1.0 - unit @ unit.T
    off_diagonal = ~np.eye(len(pids), dtype=bool)
    return {"within_cosine_distance": round(float(distances[same & off_diagonal].mean()), 4),
            "between_cosine_distance": round(float(distances[~same].mean()), 4)}


def _loo_rank1(features, pids):
    unit = _normalised(features)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return round(float((pids[similarity.argmax(axis=1)] == pids).mean()), 4)


def _covariance_root(covariance, rank):
    """A square root L (covariance ~ L L^T) with eigenvalues beyond `rank` raised to the rank-th one."""
    values, vectors = np.linalg.eigh(covariance)
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    rank = int(min(max(rank, 1), len(values)))
    values[rank:] = values[rank - 1]
    return vectors * np.sqrt(values)


def measure_spread(features, pids):
    """The model of the synthetic features: mean, covariance roots and the measured facts (see module doc)."""
    unit = _normalised(features)
    ids, inverse = np.unique(pids, return_inverse=True)
    centres = np.stack([unit[inverse == i].mean(axis=0) for i in range(len(ids))])
    residuals = unit - centres[inverse]
    between_rank, within_rank = len(ids) - 1, len(pids) - len(ids)
    between = np.cov(centres, rowvar=False)
    within = residuals.T @ residuals / max(1, within_rank)

    def participation(covariance):
        values = np.clip(np.linalg.eigvalsh(covariance), 0, None)
        return round(float(values.sum() ** 2 / (values ** 2).sum()), 2)

    facts = {"num_ids": int(len(ids)), "num_images": int(len(pids)), "dim": int(unit.shape[1]),
             "between_variance": round(float(np.trace(between)), 5), "within_variance": round(float(np.trace(within)), 5),
             "between_effective_dims": participation(between), "within_effective_dims": participation(within),
             "between_rank": int(min(between_rank, unit.shape[1])), "within_rank": int(min(within_rank, unit.shape[1])),
             "loo_rank1": _loo_rank1(features, pids), **_cosine_spread(features, pids)}
    model = {"mean": unit.mean(axis=0), "between_root": _covariance_root(between, between_rank),
             "within_root": _covariance_root(within, within_rank)}
    return model, facts


def synthesize(model, num_ids, images_per_id, seed, centres=None):
    """(features float32 [num_ids * images_per_id, D], pids, centres): images of `num_ids` identities (new
    centres unless `centres` are given, then `num_ids` images of identities drawn from them)."""
    rng = np.random.default_rng(seed)
    dim = len(model["mean"])
    if centres is None:
        centres = (model["mean"] + rng.standard_normal((num_ids, dim), dtype=np.float32) @ model["between_root"].T
                   ).astype(np.float32)
        pids = np.repeat(np.arange(num_ids), images_per_id)
    else:
        pids = rng.integers(0, len(centres), num_ids * images_per_id)
    within = model["within_root"].T.astype(np.float32)
    features = np.empty((len(pids), dim), np.float32)
    for start in range(0, len(pids), 65_536):
        rows = slice(start, start + 65_536)
        features[rows] = centres[pids[rows]] + rng.standard_normal((len(pids[rows]), dim), dtype=np.float32) @ within
    return features, pids.astype(np.int64) + 1, centres


# === Timing ===


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _qps_batch_1(index, queries, min_seconds):
    index.search(queries[:1], K)
    count, start = 0, time.perf_counter()
    while count < len(queries) and (count < 20 or time.perf_counter() - start < min_seconds):
        index.search(queries[count:count + 1], K)
        count += 1
    return count / (time.perf_counter() - start)


def _search_batch_64(index, queries, repeats):
    """(rows int64 [Q, K], best queries/s over `repeats` passes) in batches of 64."""
    index.search(queries[:64], K)
    best, rows = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        rows = np.concatenate([index.search(queries[i:i + 64], K)[1] for i in range(0, len(queries), 64)])
        best = max(best, len(queries) / (time.perf_counter() - start))
    return rows, best


def recall_at_k(rows, exact_rows):
    """Mean over queries of |rows ∩ exact_rows| / k (padding -1 ignored)."""
    hits = [len(set(r[r >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for r, e in zip(rows, exact_rows)]
    return float(np.mean(hits))


def bench_kind(kind, features, pids, queries, exact_rows, *, repeats, min_seconds, seed=0, sweep=True):
    """One record (module doc) for `kind` over `features`; also returns the rows found at batch 64."""
    settings = SETTINGS[kind]
    rss = _rss_bytes()
    start = time.perf_counter()
    index = GalleryIndex.build(features, pids, np.ones_like(pids), np.arange(len(pids)).astype(str), kind=kind,
                               settings=settings, seed=seed)
    build_seconds = time.perf_counter() - start
    rss_growth = _rss_bytes() - rss
    memory = int(faiss.serialize_index(index.index).size)
    qps_1 = _qps_batch_1(index, queries, min_seconds)
    rows, qps_64 = _search_batch_64(index, queries, repeats)
    record = {"index": kind, "gallery_size": int(len(pids)), "dim": int(features.shape[1]),
              "recall_at_10": round(recall_at_k(rows, rows if exact_rows is None else exact_rows), 4),
              "qps_batch_1": round(qps_1, 1), "qps_batch_64": round(qps_64, 1), "memory_bytes": memory,
              "build_seconds": round(build_seconds, 2), "rss_growth_bytes": int(rss_growth),
              "settings": {name: getattr(index.settings, name) for name in _used_settings(kind)},
              "num_queries": int(len(queries))}
    if sweep and kind in SWEEPS and exact_rows is not None:
        name, values = SWEEPS[kind]
        record["sweep"] = []
        for value in values:
            variant = index.with_settings(**{name: value})
            found, qps = _search_batch_64(variant, queries, 1)
            record["sweep"].append({name: value, "recall_at_10": round(recall_at_k(found, exact_rows), 4),
                                    "qps_batch_64": round(qps, 1)})
    del index
    return record, rows


def _used_settings(kind):
    return {"flat": (), "hnsw": ("hnsw_m", "ef_construction", "ef_search"),
            "ivfpq": ("nlist", "pq_m", "nprobe", "shortlist", "train_size")}[kind]


# === The section ===


def spread_model(runs_root="runs", train_steps=300, feature_cache=None):
    """(model, facts) of `measure_spread` on the real features of the module doc (or `feature_cache`)."""
    found = None
    if feature_cache is not None:
        with np.load(feature_cache, allow_pickle=False) as cached:
            found = (feature_cache, cached["features"], cached["pids"])
    elif os.path.isdir(runs_root):
        found = _cached_run_features(runs_root)
    if found is not None:
        path, features, pids = found
        model, facts = measure_spread(features, pids)
        return model, {"spread_source": f"evaluate feature cache {path}", **facts}
    features, pids, trained = trained_features(train_steps)
    model, facts = measure_spread(features, pids)
    return model, {"spread_source": "DA-2S trained in the bench on the synthetic world (no feature cache under "
                                    f"{runs_root!r})", "trained": trained, **facts}


def run(quick=False, sizes=None, kinds=KINDS, num_queries=None, repeats=2, min_seconds=2.0, train_steps=None,
        runs_root="runs", feature_cache=None, seed=0):
    """The search section: {"records": [...], "spread": {...}, "cpu", "threads", ...} (module doc).

    Args:
        quick: 20k gallery, 200 queries, 30 training steps (if training), one timed pass: a smoke run.
        sizes: gallery sizes (default SIZES; quick: QUICK_SIZES).
        kinds: index kinds; "flat" is always built first (the exact lists of the recall).
        num_queries: queries per gallery (default 2,000; quick 200).
        train_steps: DA-2S training steps when no feature cache exists (default 300; quick 30).
        runs_root, feature_cache: where real features are looked for / an explicit gallery_features.npz.
    """
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    num_queries = num_queries or (200 if quick else 2000)
    repeats, min_seconds = (1, 0.5) if quick else (repeats, min_seconds)
    threads = len(os.sched_getaffinity(0))
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    model, spread = spread_model(runs_root, train_steps or (30 if quick else 300), feature_cache)
    spread["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[bench search] spread from {spread['spread_source']}: {spread}", flush=True)
    result = {"cpu": cpu_model(), "threads": threads, "k": K, "images_per_id": IMAGES_PER_ID, "spread": spread,
              "timing": "GalleryIndex.search (FAISS + exact float64 re-ranking); batch 64: best of "
                        f"{repeats} passes; batch 1: >= {min_seconds} s", "records": []}
    kinds = ["flat", *[k for k in kinds if k != "flat"]]
    for size in sizes:
        features, pids, centres = synthesize(model, -(-size // IMAGES_PER_ID), IMAGES_PER_ID, seed)
        features, pids = features[:size], pids[:size]
        queries = synthesize(model, num_queries, 1, seed + 1, centres=centres[: pids.max()])[0]
        if size == sizes[0]:
            sample = np.flatnonzero(pids <= 100)
            result["synthetic_check"] = _cosine_spread(features[sample], pids[sample])
        exact_rows = None
        for kind in kinds:
            print(f"[bench search] {kind} over {size:,} x {features.shape[1]} ...", flush=True)
            record, rows = bench_kind(kind, features, pids, queries, exact_rows, repeats=repeats,
                                      min_seconds=min_seconds, seed=seed, sweep=not quick or size <= 50_000)
            exact_rows = rows if kind == "flat" else exact_rows
            record["cpu"] = result["cpu"]
            result["records"].append(record)
            print(f"[bench search] {record}", flush=True)
        del features
    return result
