"""Merging the study's parts (`workflow.study_part`) into one results entry for docs/RESULTS.md.

`load_agreeing(part_dir)` reads every `<part_dir>/seed_*.json`, keeps the parts of one study hash (the
one asked for, else the hash most parts share) and refuses the others, each named with the stage flags
where its definition differs; two parts of one seed are an error. `merge(parts)` builds the entry
`report.results_md.render` prints: the experiments.json shape (`workflow.experiments`: "setting",
"rows", "claims", "domain_distance", "quality", "timings") plus

    "study": {"hash", "seeds", "parts": [{"path", "seed", "commit", "dirty", "cpu", "total_seconds"}],
              "refused": [{"path", "study_hash", "differs": [flag path]}]},
    rows[i]["per_target"][target]["R-1" | "mAP"]["seed_query"]: `stats.seed_query_interval` (percent),
    "timings": {"seed_<k>/<stage>": seconds} (stages that ran), "quality": {"per_seed", "aggregate": {leaf path: interval}},

and the claims with intervals over seeds and queries (`claims.with_query_intervals`). With a demo
reference beside the parts (`<part_dir>/demo_quality.json`, `save_demo_reference` from a `make demo`
run's quality.json), "demo_quality" compares the study's soft masks with the demo's, figure by figure:

    "demo_quality": {"reference": {"source", "copied_at_commit", "cpu"},
                     "rows": [{"domain", "figure", "better", "study": interval, "demo", "at_least_demo"}]}
"""

import glob
import math
import os

import numpy as np

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.evaluation import claims, stats
from bgshift_tf.workflow import experiments, provenance, study_part

DEMO_REFERENCE = "demo_quality.json"
# The soft-mask figures the demo and the study are compared on, and which way is better.
DEMO_FIGURES = {"fg_psnr": "higher", "fg_ssim": "higher", "bg_energy": "lower", "checkerboard": "lower"}
PER_QUERY_FIELDS = {"R-1": "rank1", "mAP": "ap"}
ROW_METRICS = ("mAP", "R-1", "R-5", "R-10", "mINP")


def flatten(value, prefix="") -> dict:
    """{"a.b.c": leaf} of a nested dict (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    items = {}
    for key, item in value.items():
        items.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return items


def differing_flags(definition, other) -> list:
    """The flag paths ("<stage>.<flag>") whose values differ between two study definitions, sorted."""
    mine, theirs = flatten(definition.get("stages", {})), flatten(other.get("stages", {}))
    return sorted(key for key in set(mine) | set(theirs) if mine.get(key, "<absent>") != theirs.get(key, "<absent>"))


def read_parts(part_dir) -> list:
    """[(path, part)] of every `<part_dir>/seed_*.json`, sorted by path; MissingInputError when none."""
    paths = sorted(glob.glob(os.path.join(part_dir, study_part.PART_GLOB)))
    if not paths:
        raise errors.MissingInputError(f"--parts={part_dir}: no {study_part.PART_GLOB} part files; run a study "
                                       "part first (make study SEEDS=0)")
    return [(path, study_part.read_part(path)) for path in paths]


def choose_agreeing(parts, study_hash="") -> tuple:
    """(kept [(path, part)], refused [{"path", "study_hash", "differs"}]): the parts of `study_hash`, or of the
    hash most parts share; DataError on a tie between hashes or two parts of one seed."""
    by_hash = {}
    for path, part in parts:
        by_hash.setdefault(part["study_hash"], []).append((path, part))
    if study_hash and study_hash not in by_hash:
        raise errors.DataError(f"--study_hash={study_hash}: no part has it; the parts have "
                               f"{ {h: [p for p, _ in group] for h, group in by_hash.items()} }")
    if not study_hash:
        sizes = sorted((len(group) for group in by_hash.values()), reverse=True)
        if len(sizes) > 1 and sizes[0] == sizes[1]:
            raise errors.DataError("study parts of different studies, none in the majority: "
                                   f"{ {h: [p for p, _ in group] for h, group in by_hash.items()} }; "
                                   "pick one with --study_hash")
        study_hash = max(by_hash, key=lambda h: len(by_hash[h]))
    kept = by_hash[study_hash]
    seeds = [part["seed"] for _, part in kept]
    duplicates = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if duplicates:
        raise errors.DataError(f"two parts of seed(s) {duplicates}: "
                               f"{[p for p, part in kept if part['seed'] in duplicates]}; keep one of each")
    reference = kept[0][1]["study"]
    refused = [{"path": path, "study_hash": part["study_hash"],
                "differs": differing_flags(reference, part["study"])}
               for path, part in parts if part["study_hash"] != study_hash]
    return kept, refused


def _claims_quality(quality) -> dict:
    """{domain: {variant: {metric}}} of a part's quality outputs (the quality stage's {domain: {"metrics"}})."""
    return {domain: entry.get("metrics", {}) for domain, entry in (quality or {}).items() if isinstance(entry, dict)}


def _per_query(parts) -> dict:
    """{seed: {target: {row key: decoded per-query arrays}}} (`study_part.decode_per_query`)."""
    result = {}
    for part in parts:
        result[part["seed"]] = {
            target: {key: study_part.decode_per_query(entry, entry.get("pid", section["pid"]))
                     for key, entry in section["models"].items()}
            for target, section in part["per_query"].items()}
    return result


def _seed_query(per_query, seeds, target, key, metric):
    """`stats.seed_query_interval` (percent) of one row, target and metric, or None without per-query data."""
    entries = [((per_query.get(seed) or {}).get(target) or {}).get(key) for seed in seeds]
    if any(entry is None for entry in entries):
        return None
    pids = entries[0]["pid"]
    if any(not np.array_equal(entry["pid"], pids) for entry in entries):
        return None
    keep = np.ones(len(pids), bool)
    if metric == "mAP":
        keep = np.logical_and.reduce([entry["valid"] for entry in entries])
    values = np.stack([100 * entry[PER_QUERY_FIELDS[metric]][keep] for entry in entries])
    return stats.seed_query_interval(values, pids[keep]) if keep.any() else None


def _quality(parts) -> dict:
    """{"per_seed": {seed: quality outputs}, "aggregate": {leaf path: {"per_seed", **t_interval}}} over
    every finite numeric leaf of the parts' quality outputs (whatever metrics the run computed)."""
    leaves = {}
    for part in parts:
        for path, value in flatten(part.get("quality") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                leaves.setdefault(path, {})[part["seed"]] = float(value)
    aggregate = {path: {"per_seed": values, **stats.t_interval(list(values.values()))}
                 for path, values in leaves.items()}
    return {"per_seed": {part["seed"]: part.get("quality") or {} for part in parts}, "aggregate": aggregate}


def merge(parts, refused=()) -> dict:
    """The results entry (module doc) of agreeing parts (list of part dicts, one per seed)."""
    parts = sorted(parts, key=lambda part: part["seed"])
    first = parts[0]
    seeds = [part["seed"] for part in parts]
    targets = list(first["setting"]["targets"])
    keys = [key for key in experiments.experiment_keys() if key in first["rows"][targets[0]]]
    per_seed = {part["seed"]: {"rows": part["rows"], "bootstrap_ci": part["bootstrap_ci"],
                               "domain_distance": part["domain_distance"],
                               "quality": _claims_quality(part.get("quality"))} for part in parts}
    per_query = _per_query(parts)
    rows = experiments.experiment_rows(per_seed, keys, targets, metrics=ROW_METRICS)
    for row in rows:
        for target in targets:
            for metric in PER_QUERY_FIELDS:
                row["per_target"][target][metric]["seed_query"] = _seed_query(per_query, seeds, target, row["key"],
                                                                             metric)
    claim_results = claims.with_query_intervals(claims.evaluate_claims(per_seed), per_query)
    return {
        "setting": {**first["setting"], "seeds": seeds, "commit": ", ".join(dict.fromkeys(
                        p["code"]["commit"] + (" (dirty)" if p["code"].get("dirty") else "") for p in parts)),
                    # Parts may come from different machines: every distinct CPU (with its extensions) is named.
                    "machine": {**first["machine"], "cpu": "; ".join(dict.fromkeys(
                        provenance.cpu_text(p["machine"]) for p in parts))}, "wall_seconds": sum(p["total_seconds"] for p in parts),
                    "precision": {"gan": first["study"]["stages"].get("train_gan", {}).get("precision"),
                                  "reid": first["study"]["stages"].get(f"train_{keys[0]}", {}).get("precision")}},
        "study": {"hash": first["study_hash"], "seeds": seeds, "refused": list(refused),
                  "parts": [{"path": p.get("_path"), "seed": p["seed"], "commit": p["code"]["commit"],
                             "dirty": p["code"].get("dirty"), "cpu": provenance.cpu_text(p["machine"]),
                             "total_seconds": p["total_seconds"]} for p in parts],
                  "reid_curves": first.get("reid_curves") or {}},
        "rows": rows, "claims": claim_results,
        "domain_distance": {"per_seed": {s: e["domain_distance"] for s, e in per_seed.items()},
                            "aggregate": experiments.nested_aggregate(per_seed, "domain_distance")},
        "quality": _quality(parts),
        "timings": {f"seed_{part['seed']}/{stage}": t["seconds"] for part in parts
                    for stage, t in part["timings"].items() if t["status"] == "ran"},
    }


def save_demo_reference(quality_path, part_dir) -> str:
    """Copies the soft-mask figures (`DEMO_FIGURES`) of a demo run's quality.json to
    `<part_dir>/demo_quality.json` (atomically), with where they came from; returns the path written."""
    quality = errors.read_json(quality_path, f"--demo_quality={quality_path}", "run `make demo` first")
    # The figures each domain's soft-mask row has (a quality.json of older code may lack some).
    soft = {domain: {figure: out["metrics"]["soft_mask"][figure] for figure in DEMO_FIGURES
                     if figure in out["metrics"]["soft_mask"]}
            for domain, out in quality.items() if "soft_mask" in (out.get("metrics") or {})}
    if not soft:
        raise errors.DataError(f"--demo_quality={quality_path} holds no soft_mask metrics (is it a run's quality.json?)")
    path = os.path.join(part_dir, DEMO_REFERENCE)
    atomic_io.write_json(path, {"source": quality_path, "copied_at_commit": provenance.commit(),
                                "cpu": provenance.this_cpu(), "soft_mask": soft})
    return path


def demo_comparison(quality_aggregate, reference) -> dict:
    """The "demo_quality" entry (module doc): each figure of each domain both measured, the study's interval
    over seeds beside the demo's value, and whether the study's mean is at least as good."""
    rows = []
    for domain, figures in sorted(reference["soft_mask"].items()):
        for figure, better in DEMO_FIGURES.items():
            study = quality_aggregate.get(f"{domain}.metrics.soft_mask.{figure}")
            demo = figures.get(figure)
            if study is None or demo is None:
                continue
            at_least = study["mean"] >= demo if better == "higher" else study["mean"] <= demo
            rows.append({"domain": domain, "figure": figure, "better": better, "study": study, "demo": demo,
                         "at_least_demo": bool(at_least)})
    return {"reference": {key: reference.get(key) for key in ("source", "copied_at_commit", "cpu")}, "rows": rows}


def load_agreeing(part_dir, study_hash="") -> dict:
    """`merge` of the agreeing parts in `part_dir` (`choose_agreeing`), each part's "_path" recorded, and the
    comparison with the demo's soft masks when `<part_dir>/demo_quality.json` exists."""
    kept, refused = choose_agreeing(read_parts(part_dir), study_hash)
    entry = merge([{**part, "_path": path} for path, part in kept], refused)
    reference_path = os.path.join(part_dir, DEMO_REFERENCE)
    if os.path.exists(reference_path):
        reference = errors.read_json(reference_path, reference_path, "store one with --demo_quality")
        entry["demo_quality"] = demo_comparison(entry["quality"]["aggregate"], reference)
    return entry
