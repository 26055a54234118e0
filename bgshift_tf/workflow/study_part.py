"""The reference study in parts: one training seed's results as one file, `<part_dir>/seed_<k>.json`.

`make study SEEDS=k` (the experiments job with `--seeds=k --part_dir=docs/study`) runs seed k end to end and
`write_parts` writes its part atomically after the stages; a run cut short resumes from its finished
stages (`workflow.stages`) and writes the part when they are all done. `python -m bgshift_tf.results`
merges the parts (`workflow.study_merge`).

The study's identity (`study_definition`, hashed by `study_hash`) is every stage's config for one seed,
written seed-independently: the run folder as "<run>", the seed folder as "seed_<seed>", the trainers'
`seed` as "<seed>". It covers the world (preset, seed, sizes), the TFRecords, every SBSGAN's and re-ID
model's trainer flags (the flagfiles' resolved contents, not their paths), generation, evaluation,
quality and domain-distance settings and the resolved precision; not the seed list being run, the run
folder's place, the report-only stages (`experiments.FIRST_SEED_ONLY`) or any timing.

A part (format 1):
    {"format", "seed", "study_hash", "study" (the definition), "setting": {source, targets, data, preset,
     world_seed},
     "rows": {target: {row key: {"mAP", "R-1", "R-5", "R-10", "mINP"}}} (percent),
     "bootstrap_ci": {target: {row key: {"R-1", "mAP": [lo, hi] percent or None}}},
     "per_query": {target: {"pid": ..., "models": {row key: {"rank1", "ap", "valid"}}}} (`encode_per_query`),
     "quality": the quality stage's outputs as recorded ({} without it), "domain_distance": {target:
     {variant: separation}}, "reid_curves": {train stage: its early-stopping curve or None},
     "timings": {stage: {"seconds", "status"}} (this seed's stages and the shared data stages),
     "total_seconds", "code": {"commit", "dirty"}, "machine": {"platform", "cpu", "cpus"}, "written"}
"""

import base64
import hashlib
import json
import os
import re
import time

import numpy as np

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.evaluation.run import per_query_path
from bgshift_tf.workflow import config as config_lib
from bgshift_tf.workflow import experiments, provenance, report_data, run_layout
from bgshift_tf.workflow import stages as stages_lib

PART_FORMAT = 1
PART_GLOB = "seed_*.json"
# Per-query values in [0, 1] as uint16 counts of 1/SCALE (error <= 7.7e-6), little-endian, base64.
SCALE = 65535
ENCODING = f"base64 little-endian uint16, value = n / {SCALE}; pid base64 int32; valid base64 uint8"
PART_METRICS = {"mAP": "mAP", "R-1": "rank1", "R-5": "rank5", "R-10": "rank10", "mINP": "mINP"}


def part_path(part_dir, seed) -> str:
    """`<part_dir>/seed_<k>.json`."""
    return os.path.join(part_dir, f"{run_layout.seed_folder(seed)}.json")


# === The study's identity ===


def _seed_free(value, run_roots, seed):
    """`value` with each of `run_roots` (the run folder's spellings) as "<run>" and `seed_<k>` path parts
    as "seed_<seed>", recursively."""
    if isinstance(value, dict):
        return {key: _seed_free(item, run_roots, seed) for key, item in value.items()}
    if isinstance(value, list):
        return [_seed_free(item, run_roots, seed) for item in value]
    if isinstance(value, str):
        for root in run_roots:
            value = value.replace(root, "<run>")
        return re.sub(rf"\bseed_{int(seed)}(?=/|$)", "seed_<seed>", value)
    return value


def study_definition(config, seed=0) -> dict:
    """{"stages": {stage name without its seed folder: seed-independent config}} of the experiments job
    on `config` (keys of `config.DEFAULT_CONFIG`) for training seed `seed` (see the module doc)."""
    config = config_lib.merge_config({**config, "seeds": [str(int(seed))]})
    data_dir = run_layout.RunLayout(config).data_dir
    run_roots = sorted({data_dir, os.path.abspath(data_dir)}, key=len, reverse=True)
    stages = {}
    for stage in experiments.seeded_experiment_stages(config):
        name = stage.name.split("/", 1)[-1]
        if name in experiments.FIRST_SEED_ONLY:
            continue
        stage_config = stages_lib.normalize(stage.config)
        seeded = name not in experiments.SHARED_STAGES  # the world's own seed is not the training seed
        if seeded and isinstance(stage_config, dict) and stage_config.get("seed") == int(seed):
            stage_config["seed"] = "<seed>"
        stages[name] = _seed_free(stage_config, run_roots, seed)
    return {"stages": stages}


def study_hash(definition) -> str:
    """The first 16 hex digits of the SHA-256 of `definition` as key-sorted compact JSON."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# === Per-query results, compact ===


def _b64(array, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def encode_per_query(per_query) -> dict:
    """{"rank1", "ap", "valid"} of `evaluate_rank`'s per-query arrays, compact (`ENCODING`)."""
    def scaled(values):
        return np.round(np.clip(np.nan_to_num(np.asarray(values, np.float64)), 0.0, 1.0) * SCALE)

    return {"rank1": _b64(scaled(per_query["rank1"]), "<u2"), "ap": _b64(scaled(per_query["ap"]), "<u2"),
            "valid": _b64(np.asarray(per_query["valid"], bool), "u1")}


def decode_per_query(entry, pid) -> dict:
    """Numpy arrays {"pid", "rank1", "ap", "valid"} of one `encode_per_query` entry and its target's pids."""
    def array(name, dtype):
        return np.frombuffer(base64.b64decode(entry[name]), dtype=dtype)

    pids = np.frombuffer(base64.b64decode(pid), dtype="<i4")
    return {"pid": pids, "rank1": array("rank1", "<u2") / SCALE, "ap": array("ap", "<u2") / SCALE,
            "valid": array("valid", "u1").astype(bool)}


def _per_query_section(ctx, keys) -> dict:
    """{target: {"pid", "models": {key: encoded}}}; a model scored on other queries than the target's first
    keeps its own "pid"."""
    section = {}
    for target in ctx.targets:
        models, first_pid = {}, None
        for key in keys:
            with np.load(per_query_path(os.path.join(ctx.eval_dir(key), f"{target}.json"))) as arrays:
                pid = _b64(arrays["pid"], "<i4")
                models[key] = encode_per_query(arrays)
            first_pid = first_pid or pid
            if pid != first_pid:
                models[key]["pid"] = pid
        section[target] = {"pid": first_pid, "models": models}
    return section


# === The part ===


def _rows(ctx, keys):
    """(rows, bootstrap_ci) of the part: percent metrics and each evaluation's bootstrap CIs per target."""
    rows = {target: {} for target in ctx.targets}
    bootstrap = {target: {} for target in ctx.targets}
    for key in keys:
        evals = report_data.read_eval(ctx, key)
        for target in ctx.targets:
            rows[target][key] = {column: 100 * evals[target][name] for column, name in PART_METRICS.items()}
            cis = report_data.metric_intervals(evals[target]) or {}
            bootstrap[target][key] = {m: None if cis.get(m) is None else [100 * v for v in cis[m]]
                                      for m in ("R-1", "mAP")}
    return rows, bootstrap


def _timings(seed, results) -> dict:
    """{stage name without its seed folder: {"seconds", "status"}} of seed `seed`'s and the shared stages."""
    prefix = f"{run_layout.seed_folder(seed)}/"
    return {name.removeprefix(prefix): {"seconds": result["seconds"], "status": result["status"]}
            for name, result in results.items()
            if name.startswith(prefix) or name in experiments.SHARED_STAGES}


def _reid_curves(seed, results) -> dict:
    """{train stage: the "curve" its outputs recorded (early stopping), or None} of seed `seed`."""
    prefix = f"{run_layout.seed_folder(seed)}/train_"
    return {name.split("/", 1)[1]: result["outputs"].get("curve") for name, result in results.items()
            if name.startswith(prefix) and not name.startswith(f"{prefix}gan")}


def part_document(config, seed, results) -> dict:
    """The part of seed `seed` (module doc) from the finished stages `results` (`run_stages`' return)."""
    config = config_lib.merge_config(config)
    ctx = run_layout.RunLayout(config, seed=int(seed))
    keys = experiments.experiment_keys()
    definition = study_definition(config, seed)
    rows, bootstrap = _rows(ctx, keys)
    quality = stages_lib.read_manifest(ctx.run_dir, "quality")
    timings = _timings(seed, results)
    return {
        "format": PART_FORMAT, "seed": int(seed), "study_hash": study_hash(definition), "study": definition,
        "setting": {"source": ctx.source, "targets": ctx.targets, "data": config["data"],
                    "preset": config["preset"], "world_seed": config["world_seed"]},
        "rows": rows, "bootstrap_ci": bootstrap, "per_query_encoding": ENCODING,
        "per_query": _per_query_section(ctx, keys),
        "quality": (quality or {}).get("outputs", {}).get("quality", {}),
        "domain_distance": experiments.domain_distances(ctx), "reid_curves": _reid_curves(seed, results),
        "timings": timings, "total_seconds": sum(t["seconds"] for t in timings.values() if t["status"] == "ran"),
        "code": provenance.code(), "machine": provenance.machine(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_parts(config, results, log=print) -> list:
    """Writes the part of every seed of `config` into `config["part_dir"]` (atomically); returns the paths."""
    config = config_lib.merge_config(config)
    paths = []
    for seed in config["seeds"]:
        document = part_document(config, int(seed), results)
        path = part_path(config["part_dir"], seed)
        previous = read_part(path) if os.path.isfile(path) else None
        if previous and previous.get("study_hash") != document["study_hash"]:
            log(f"[study] {path}: replacing a part of another study (hash {previous.get('study_hash')})")
        os.makedirs(config["part_dir"] or ".", exist_ok=True)
        paths.append(atomic_io.write_json(path, document))
        log(f"[study] wrote {path} (study hash {document['study_hash']})")
    return paths


def read_part(path) -> dict:
    """A part file, checked for its format; errors.DataError naming the file otherwise."""
    try:
        with open(path) as f:
            part = json.load(f)
    except json.JSONDecodeError as error:
        raise errors.DataError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(part, dict) or part.get("format") != PART_FORMAT or "study_hash" not in part:
        raise errors.DataError(f"{path} is not a study part of format {PART_FORMAT} (keys: "
                               f"{sorted(part) if isinstance(part, dict) else type(part).__name__})")
    return part


def run_study_part(config, *, force=(), log=None) -> dict:
    """The experiments job on `config` (`experiments.run_experiments`), then its parts when
    `config["part_dir"]` is set; returns the job's result plus "parts" (the paths written)."""
    result = experiments.run_experiments(config, force=force, log=log)
    parts = write_parts(config, result["stages"], log=log or print) if config.get("part_dir") else []
    return {**result, "parts": parts}
