"""Stage runner: skip when complete, re-run on config change (and downstream), force, resume, timings."""

import json
import os

import pytest

from bgshift_tf.core import errors
from bgshift_tf.workflow import stages as stages_lib


def _job(tmp_path, calls, config_a=None, fail=()):
    """Three stages a -> b -> c; each appends its name to `calls` and writes a file into its folder."""

    def make(name):
        def fn():
            calls.append(name)
            if name in fail:
                raise RuntimeError(f"stage {name} broke")
            folder = tmp_path / "out" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "part.txt").write_text("x")
            return {"folder": str(folder)}
        return fn

    return [
        stages_lib.Stage("a", make("a"), config=config_a or {"n": 1}, clean_paths=[str(tmp_path / "out" / "a")],
                         budget=10),
        stages_lib.Stage("b", make("b"), config={"m": [1, 2]}, deps=["a"], clean_paths=[str(tmp_path / "out" / "b")],
                         budget=20),
        stages_lib.Stage("c", make("c"), deps=["b"], budget=30),
    ]


def _run(tmp_path, calls, **kwargs):
    lines = []
    force = kwargs.pop("force", ())
    result = stages_lib.run_stages(tmp_path / "run", _job(tmp_path, calls, **kwargs), force=force, log=lines.append)
    return result, lines


def test_second_run_skips_every_complete_stage(tmp_path):
    calls = []
    first, _ = _run(tmp_path, calls)
    assert calls == ["a", "b", "c"]
    assert [r["status"] for r in first.values()] == ["ran"] * 3
    second, lines = _run(tmp_path, calls)
    assert calls == ["a", "b", "c"]
    assert [r["status"] for r in second.values()] == ["skipped"] * 3
    assert second["a"]["outputs"] == {"folder": str(tmp_path / "out" / "a")}
    assert all("skipped" in line for line in lines[:3])


def test_changed_config_reruns_stage_and_downstream_and_cleans_outputs(tmp_path):
    calls = []
    _run(tmp_path, calls)
    stale = tmp_path / "out" / "a" / "stale.txt"
    stale.write_text("old")
    calls.clear()
    result, lines = _run(tmp_path, calls, config_a={"n": 2})
    assert calls == ["a", "b", "c"]
    assert "config changed: n" in result["a"]["reason"]
    assert "upstream stage(s) re-ran: a" == result["b"]["reason"]
    assert not stale.exists()  # the stale stage's folder was removed before redoing it
    assert any("removing stale outputs" in line for line in lines)
    calls.clear()
    _run(tmp_path, calls, config_a={"n": 2})
    assert calls == []


def test_force_stage_redoes_it_and_its_dependents_only(tmp_path):
    calls = []
    _run(tmp_path, calls)
    calls.clear()
    result, _ = _run(tmp_path, calls, force=("b",))
    assert calls == ["b", "c"]
    assert result["a"]["status"] == "skipped"
    assert result["b"]["reason"] == "forced by --force_stage"
    with pytest.raises(ValueError, match="unknown stages \\['nope'\\]"):
        _run(tmp_path, calls, force=("nope",))


def test_failing_stage_writes_no_manifest_and_next_run_resumes_there(tmp_path):
    calls = []
    with pytest.raises(RuntimeError, match="stage b broke"):
        _run(tmp_path, calls, fail=("b",))
    assert calls == ["a", "b"]
    assert stages_lib.read_manifest(tmp_path / "run", "a") is not None
    assert stages_lib.read_manifest(tmp_path / "run", "b") is None
    timings = stages_lib.read_timings(tmp_path / "run")
    assert [(r["stage"], r["status"]) for r in timings] == [("a", "ran"), ("b", "failed"), ("c", "not run")]
    partial = tmp_path / "out" / "b" / "partial.txt"
    partial.parent.mkdir(parents=True)
    partial.write_text("checkpoint")
    calls.clear()
    result, _ = _run(tmp_path, calls)
    assert calls == ["b", "c"]
    assert "resuming an interrupted run" in result["b"]["reason"]
    assert partial.exists()  # an interrupted stage keeps its outputs (trainers resume from checkpoints)


def test_failure_of_a_forced_stage_leaves_it_incomplete(tmp_path):
    calls = []
    _run(tmp_path, calls)
    with pytest.raises(RuntimeError):
        _run(tmp_path, calls, force=("a",), fail=("a",))
    calls.clear()
    _run(tmp_path, calls)
    assert calls == ["a", "b", "c"]


def test_timings_and_manifest_contents(tmp_path):
    calls = []
    _run(tmp_path, calls)
    manifest = stages_lib.read_manifest(tmp_path / "run", "b")
    assert manifest["config"] == {"m": [1, 2]}
    assert manifest["deps"] == {"a": stages_lib.read_manifest(tmp_path / "run", "a")["run_id"]}
    with open(tmp_path / "run" / "timings.json") as f:
        timings = json.load(f)
    assert [r["stage"] for r in timings["stages"]] == ["a", "b", "c"]
    assert all(r["status"] == "ran" and r["seconds"] >= 0 for r in timings["stages"])
    _run(tmp_path, calls)
    rows = stages_lib.read_timings(tmp_path / "run")
    assert [r["status"] for r in rows] == ["skipped"] * 3
    assert rows[1]["seconds"] == manifest["seconds"]


def test_eta_uses_budgets_then_recorded_durations(tmp_path):
    calls = []
    _, lines = _run(tmp_path, calls)
    assert "ETA 0:01:00" in lines[0]  # 10 + 20 + 30 s of budget
    _, lines = _run(tmp_path, calls, force=("c",))
    recorded = stages_lib.read_manifest(tmp_path / "run", "c")["seconds"]
    assert f"ETA {stages_lib.format_seconds(recorded)}" in [line for line in lines if "running" in line][0]


def test_bad_dependencies_are_rejected(tmp_path):
    late = [stages_lib.Stage("x", dict, deps=["y"]), stages_lib.Stage("y", dict)]
    with pytest.raises(ValueError, match="stage 'x' depends on \\['y'\\]"):
        stages_lib.run_stages(tmp_path, late)
    twice = [stages_lib.Stage("x", dict), stages_lib.Stage("x", dict)]
    with pytest.raises(ValueError, match="duplicates: \\['x'\\]"):
        stages_lib.run_stages(tmp_path, twice)
    assert not os.path.exists(tmp_path / "timings.json")


def test_missing_or_changed_output_reruns_the_stage_and_its_dependents(tmp_path):
    calls = []
    _run(tmp_path, calls)
    manifest = stages_lib.read_manifest(tmp_path / "run", "a")
    assert manifest["contents"] == {str(tmp_path / "out" / "a" / "part.txt"): 1}
    (tmp_path / "out" / "a" / "extra.txt").write_text("added later")  # files added since are fine
    calls.clear()
    assert [r["status"] for r in _run(tmp_path, calls)[0].values()] == ["skipped"] * 3
    os.remove(tmp_path / "out" / "a" / "part.txt")
    result, lines = _run(tmp_path, calls)
    assert calls == ["a", "b", "c"]
    assert result["a"]["reason"].startswith("its outputs changed since it completed: ")
    assert "part.txt is missing" in result["a"]["reason"]
    assert any("running (its outputs changed" in line for line in lines)
    assert result["b"]["reason"] == "upstream stage(s) re-ran: a"
    calls.clear()
    (tmp_path / "out" / "b" / "part.txt").write_text("longer")
    result, _ = _run(tmp_path, calls)
    assert calls == ["b", "c"] and "changed size (1 -> 6 bytes)" in result["b"]["reason"]


def test_a_stage_deletes_nothing_while_its_inputs_are_missing(tmp_path):
    # "clobber" (no dependency relation) removes a's output, once armed, after a was checked; "c" reads a.
    out, armed = tmp_path / "out", []

    def write(name):
        def fn():
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "part.txt").write_text("x")
        return fn

    def clobber():
        if armed:
            os.remove(out / "a" / "part.txt")

    stages = [stages_lib.Stage("a", write("a"), clean_paths=[str(out / "a")]),
              stages_lib.Stage("clobber", clobber),
              stages_lib.Stage("c", write("c"), deps=["a"], clean_paths=[str(out / "c")])]
    stages_lib.run_stages(tmp_path / "run", stages, log=lambda line: None)
    armed.append(True)
    with pytest.raises(errors.DataError, match=r"stage 'c' cannot run: .*a: .*part.txt is missing"):
        stages_lib.run_stages(tmp_path / "run", stages, force=("a", "clobber", "c"), log=lambda line: None)
    assert (out / "c" / "part.txt").read_text() == "x"  # the complete stage's outputs were not cleaned
