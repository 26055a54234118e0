"""Runs the per-area benchmarks and writes their results as one JSON document.

Every area module in this package exposes `run(quick: bool = False) -> dict` of JSON-able values.
"""

import importlib
import json
import os
import platform
import time

import numpy as np

AREAS = ("input_pipeline", "gan", "instance_norm", "reid", "rank", "export", "search", "beam")
TRAINING_AREAS = ("gan", "reid")  # their run() also takes train_steps (timed training steps per figure)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def run_suite(out_path, only=(), quick=False, train_steps=0):
    """Runs the selected areas (all when `only` is empty) and writes `out_path` atomically.

    An area that raises is recorded with its error instead of stopping the others, so one broken
    benchmark does not hide the rest; the process still reports it on stdout. `train_steps` > 0 replaces
    the number of timed training steps of the TRAINING_AREAS.
    """
    unknown = sorted(set(only) - set(AREAS))
    if unknown:
        raise ValueError(f"`--only` names unknown benchmark areas {unknown}; known: {list(AREAS)}")
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "quick": bool(quick),
        "areas": {},
    }
    for area in only or AREAS:
        start = time.perf_counter()
        print(f"[bench] {area} ...", flush=True)
        try:
            module = importlib.import_module(f"bgshift_tf.benchmarks.{area}")
            extra = {"train_steps": train_steps} if train_steps and area in TRAINING_AREAS else {}
            outcome = module.run(quick=quick, **extra)
        except Exception as error:  # noqa: BLE001 - recorded in the JSON and printed, not swallowed.
            outcome = {"error": f"{type(error).__name__}: {error}"}
            print(f"[bench] {area} FAILED: {outcome['error']}", flush=True)
        outcome["wall_seconds"] = round(time.perf_counter() - start, 2)
        results["areas"][area] = _jsonable(outcome)
        print(json.dumps({area: results["areas"][area]}, indent=2), flush=True)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    tmp_path = f"{out_path}.tmp-{os.getpid()}"
    with open(tmp_path, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp_path, out_path)
    print(f"[bench] wrote {out_path}")
    return results
