"""A small stage runner: resumable jobs made of named stages with completion manifests.

A `Stage` has a name, a function `fn() -> outputs` (a JSON-able dict), the config that determines its
result (JSON-able), the names of the stages it depends on, the paths it writes (`clean_paths`) and a
time `budget` in seconds (used for the ETA until a real duration is recorded).

`run_stages(run_dir, stages, force=())` runs them in order. For each stage:
- its manifest `<run_dir>/stages/<name>.json` (a name `<folder>/<stage>`: `<run_dir>/<folder>/stages/
  <stage>.json`) records {config, deps: {dep: dep's run_id}, run_id,
  outputs, contents, seconds, finished}, `contents` being {file: size in bytes} of every file under its
  `clean_paths` (`output_contents`). It is written atomically and only after the stage returned, so a
  stage that raised or was interrupted has none and the next run starts at it;
- the stage is SKIPPED when its manifest exists, its config is the same, every dependency still has
  the run_id it was built from (so a dependency that re-ran, for any reason, re-runs this stage too) and
  every recorded file is still there with its size (files added since are fine);
- it RE-RUNS when the config changed, a dependency re-ran, a recorded output is missing or changed
  (`output_problems`; the log line names it), or it is named in `force`. A stage that had
  completed before is redone from scratch: its `clean_paths` are deleted first (stale outputs);
- an interrupted stage (a `<name>.started.json` marker but no manifest) is RESUMED when the marker's
  config and dependencies match: its outputs are kept, so the trainers continue from their own
  checkpoints. A marker from another config means stale partial outputs: they are cleaned.
A stage deletes nothing before its inputs are known to be there: the recorded outputs of its
dependencies are re-checked first, and a problem raises `errors.DataError` naming them.
Every decision is logged with its reason; progress lines give the elapsed time and an ETA from the
remaining stages' last recorded durations (or budgets). `<run_dir>/timings.json` lists every stage
with its seconds and status ("ran" | "skipped", skipped stages show the recorded duration).
"""

import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from bgshift_tf.core import atomic_io, errors

STAGES_FOLDER = "stages"
TIMINGS_FILE = "timings.json"


@dataclasses.dataclass
class Stage:
    """One stage of a job.

    Attributes:
        name: unique name; also the manifest's file name.
        fn: `fn() -> dict` of JSON-able outputs (paths, metrics); raising leaves no manifest.
        config: JSON-able settings that determine the result; a change re-runs the stage.
        deps: names of earlier stages whose outputs this one reads.
        clean_paths: files/folders the stage writes, deleted before redoing a completed (stale) stage;
            the manifest records the files under them, checked before the stage is skipped.
        budget: expected seconds, for the ETA before a duration has been recorded.
    """

    name: str
    fn: Callable[[], Mapping]
    config: Mapping = dataclasses.field(default_factory=dict)
    deps: Sequence[str] = ()
    clean_paths: Sequence[str] = ()
    budget: float = 60.0


def keras_stage(name, fn, *, config, deps=(), clean=(), budget=60.0) -> Stage:
    """A `Stage` whose `fn` runs after `keras.backend.clear_session()`, which frees the previous stage's graphs
    and models (one process runs every stage of a job); `clean` are its `clean_paths`."""

    def run():
        import keras  # here: the runner itself needs no Keras

        keras.backend.clear_session()
        return fn()

    return Stage(name, run, config=config, deps=list(deps), clean_paths=list(clean), budget=budget)


def normalize(config):
    """The JSON round trip of `config` (tuples -> lists, numpy -> Python), so comparisons are exact."""
    return json.loads(json.dumps(config, sort_keys=True, default=atomic_io.json_default))


def _stage_file(run_dir, name, suffix) -> str:
    """`<run_dir>/stages/<name><suffix>`; a name "<folder>/<stage>" (the experiments job's seed stages) keeps
    its files in that sub-run's own `<run_dir>/<folder>/stages/`, where readers of that folder look."""
    folder, _, stage = name.rpartition("/")
    return os.path.join(run_dir, folder, STAGES_FOLDER, f"{stage}{suffix}")


def manifest_path(run_dir, name) -> str:
    return _stage_file(run_dir, name, ".json")


def _started_path(run_dir, name) -> str:
    return _stage_file(run_dir, name, ".started.json")


def read_manifest(run_dir, name):
    """The completion manifest of stage `name`, or None if it never completed."""
    path = manifest_path(run_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def output_contents(paths) -> dict:
    """{file path: size in bytes} of the files `paths` name and of every file under the folders they name."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names]
        elif os.path.isfile(path):
            files.append(path)
    return {file: os.path.getsize(file) for file in sorted(files)}


def output_problems(manifest) -> list:
    """["<file> is missing" | "<file> changed size (a -> b bytes)"] for the files `manifest` recorded."""
    problems = []
    for file, size in (manifest.get("contents") or {}).items():
        if not os.path.isfile(file):
            problems.append(f"{file} is missing")
        elif os.path.getsize(file) != size:
            problems.append(f"{file} changed size ({size} -> {os.path.getsize(file)} bytes)")
    return problems


def _listed(problems, limit=3) -> str:
    return "; ".join(problems[:limit]) + (f" (and {len(problems) - limit} more)" if len(problems) > limit else "")


def format_seconds(seconds) -> str:
    seconds = int(round(max(float(seconds), 0.0)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _check_stages(stages):
    names = [stage.name for stage in stages]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"stage names must be unique. Received duplicates: {duplicates}")
    for position, stage in enumerate(stages):
        bad = [dep for dep in stage.deps if dep not in names[:position]]
        if bad:
            raise ValueError(f"stage {stage.name!r} depends on {bad}, which are not earlier stages. "
                             f"Stage order: {names}")


def run_stages(run_dir, stages: Sequence[Stage], *, force=(), log=None) -> dict:
    """Runs (or skips) `stages` in order; see the module docstring.

    Args:
        run_dir: the run folder (holds `stages/` and `timings.json`).
        stages: the job's stages; dependencies must come earlier.
        force: names of stages to redo even when complete (their dependents re-run too).
        log: `log(line)` for progress lines (default: print to stdout, flushed).

    Returns:
        {name: {"status": "ran" | "skipped", "seconds", "outputs", "reason"}} in stage order.
    Raises:
        ValueError for unknown `force` names or bad dependencies; whatever a stage raises (after
        recording the failure in timings.json).
    """
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    stages = list(stages)
    _check_stages(stages)
    names = [stage.name for stage in stages]
    unknown = sorted(set(force) - set(names))
    if unknown:
        raise ValueError(f"--force_stage names unknown stages {unknown}; the stages are {names}")
    os.makedirs(os.path.join(run_dir, STAGES_FOLDER), exist_ok=True)
    manifests = {stage.name: read_manifest(run_dir, stage.name) for stage in stages}
    expected = {
        stage.name: (manifests[stage.name] or {}).get("seconds", stage.budget) for stage in stages
    }
    run_ids = {name: (manifest or {}).get("run_id") for name, manifest in manifests.items()}
    results, timings = {}, []
    job_start = time.monotonic()
    for index, stage in enumerate(stages):
        config = normalize(stage.config)
        deps = {dep: run_ids[dep] for dep in stage.deps}
        manifest = manifests[stage.name]
        reason = _rerun_reason(stage, manifest, config, deps, force)
        remaining = sum(expected[s.name] for s in stages[index:] if s.name not in results)
        prefix = f"[stage {index + 1}/{len(stages)} {stage.name}]"
        if reason is None:
            log(f"{prefix} skipped: complete with the same config (took {format_seconds(manifest['seconds'])} "
                f"when it ran)")
            results[stage.name] = {"status": "skipped", "seconds": manifest["seconds"],
                                   "outputs": manifest.get("outputs", {}), "reason": "complete"}
            timings.append({"stage": stage.name, "seconds": manifest["seconds"], "status": "skipped"})
            continue
        _check_inputs(stage, manifests)
        reason = _prepare(run_dir, stage, manifest, config, deps, reason, log, prefix)
        # The old manifest goes first: if this run fails, the next one must not find it complete.
        if manifest is not None:
            os.remove(manifest_path(run_dir, stage.name))
        elapsed = time.monotonic() - job_start
        log(f"{prefix} running ({reason}); elapsed {format_seconds(elapsed)}, ETA {format_seconds(remaining)} "
            f"for this and the remaining stages")
        atomic_io.write_json(_started_path(run_dir, stage.name), {"config": config, "deps": deps})
        _write_timings(run_dir, timings, stages[index:])
        manifests[stage.name] = _run_stage(run_dir, stage, config, deps, timings, stages[index + 1:], log, prefix)
        run_ids[stage.name], seconds = manifests[stage.name]["run_id"], manifests[stage.name]["seconds"]
        results[stage.name] = {"status": "ran", "seconds": seconds, "outputs": manifests[stage.name]["outputs"],
                               "reason": reason}
        timings.append({"stage": stage.name, "seconds": seconds, "status": "ran"})
        _write_timings(run_dir, timings, ())
        log(f"{prefix} done in {format_seconds(seconds)}; elapsed {format_seconds(time.monotonic() - job_start)}")
    _write_timings(run_dir, timings, ())
    log(f"[stages] all {len(stages)} stages complete in {format_seconds(time.monotonic() - job_start)} "
        f"({sum(r['status'] == 'ran' for r in results.values())} ran, "
        f"{sum(r['status'] == 'skipped' for r in results.values())} skipped)")
    return results


def _run_stage(run_dir, stage, config, deps, timings, later, log, prefix) -> dict:
    """Runs `stage.fn` and writes its manifest (returned); on failure records it in timings.json (`later`:
    the stages after it, still expected) and re-raises, with no manifest written."""
    start = time.monotonic()
    try:
        outputs = stage.fn() or {}
    except BaseException as error:
        seconds = time.monotonic() - start
        timings.append({"stage": stage.name, "seconds": seconds, "status": "failed"})
        _write_timings(run_dir, timings, later)
        log(f"{prefix} FAILED after {format_seconds(seconds)}: {type(error).__name__}: {error}. "
            "No manifest written: the next run resumes here.")
        raise
    seconds = time.monotonic() - start
    manifest = {
        "name": stage.name, "config": config, "deps": deps, "run_id": uuid.uuid4().hex,
        "outputs": normalize(outputs), "contents": output_contents(stage.clean_paths),
        "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_io.write_json(manifest_path(run_dir, stage.name), manifest)
    os.remove(_started_path(run_dir, stage.name))
    return manifest


def _rerun_reason(stage, manifest, config, deps, force):
    """Why the stage must run, or None when its manifest is still valid."""
    if stage.name in force:
        return "forced by --force_stage"
    if manifest is None:
        return "not complete yet"
    if manifest.get("config") != config:
        changed = sorted(
            key for key in set(config) | set(manifest.get("config") or {})
            if (manifest.get("config") or {}).get(key) != config.get(key)
        ) if isinstance(config, dict) else ["config"]
        return f"config changed: {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}"
    stale = sorted(dep for dep, run_id in deps.items() if manifest.get("deps", {}).get(dep) != run_id)
    if stale:
        return f"upstream stage(s) re-ran: {', '.join(stale)}"
    problems = output_problems(manifest)
    if problems:
        return f"its outputs changed since it completed: {_listed(problems)}"
    return None


def _check_inputs(stage, manifests):
    """Raises errors.DataError if a dependency's recorded outputs are missing or changed (before `stage`
    deletes anything of its own)."""
    problems = [f"{dep}: {problem}" for dep in stage.deps for problem in output_problems(manifests[dep] or {})]
    if problems:
        raise errors.DataError(f"stage {stage.name!r} cannot run: the outputs of its dependencies changed "
                               f"({_listed(problems)}); rerun the job to redo those stages. Nothing was deleted.")


def _prepare(run_dir, stage, manifest, config, deps, reason, log, prefix):
    """Cleans stale outputs before a run; returns the reason text to log (resume or fresh start)."""
    started = None
    started_file = _started_path(run_dir, stage.name)
    if os.path.isfile(started_file):
        with open(started_file) as f:
            started = json.load(f)
    resumable = (manifest is None and started is not None and started.get("config") == config
                 and started.get("deps") == deps)
    if resumable:
        return "resuming an interrupted run of this stage: its outputs are kept"
    stale = [path for path in stage.clean_paths if os.path.lexists(path)]
    if stale and (manifest is not None or started is not None):
        log(f"{prefix} removing stale outputs before redoing it: {', '.join(stale)}")
        for path in stale:
            _remove(path)
    if manifest is None and started is not None:
        return f"{reason}; an interrupted run with other settings or inputs was discarded"
    return reason


def _write_timings(run_dir, timings, pending):
    rows = list(timings) + [{"stage": stage.name, "seconds": None, "status": "not run"} for stage in pending]
    atomic_io.write_json(os.path.join(run_dir, TIMINGS_FILE), {
        "stages": rows, "total_seconds": sum(float(r["seconds"] or 0) for r in timings if r["status"] != "skipped"),
    })


def read_timings(run_dir) -> list:
    """The `[{"stage", "seconds", "status"}]` rows of `<run_dir>/timings.json` ([] if absent)."""
    path = os.path.join(run_dir, TIMINGS_FILE)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)["stages"]
