"""The experiments job over training seeds on the tiny preset: one shared world, per-seed trained stages,
experiments.json (per-seed values, mean and interval per row and target), and per-seed resume."""

import json
import os
import shutil
import statistics

import pytest

from bgshift_tf.workflow import config as config_lib
from bgshift_tf.workflow import experiments
from bgshift_tf.workflow import stages as stages_lib

TINY_FLAGS = os.path.join(os.path.dirname(__file__), "..", "bgshift_tf", "configs", "tiny.flags")
ROW = "ide_original"


def _one_row(patch):
    """The experiments job with one Table 2 row (IDE on original images), so the run stays short; the
    tables stage (tested in test_pipeline.py) writes empty tables."""
    patch.setattr(experiments, "experiment_keys", lambda: [ROW])
    patch.setattr(experiments, "build_tables", lambda ctx: {
        target: {"setting": "tiny", "table2": [], "table3": [], "checks": {}} for target in ctx.targets})


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    """`--seeds=0,1` on the tiny preset with one row (`_one_row`): (config, first run's result)."""
    patch = pytest.MonkeyPatch()
    _one_row(patch)
    config = {**config_lib.config_from_flagfile(TINY_FLAGS), "runs_root": str(tmp_path_factory.mktemp("runs")),
              "seeds": ["0", "1"], "ide_variants": ["original"], "da2s": False,
              "gan_overrides": ["max_steps=2"], "reid_overrides": ["max_steps=2"]}
    yield config, experiments.run_experiments(config, log=lambda line: None)
    patch.undo()


@pytest.mark.slow
def test_seeds_share_the_world_train_apart_and_summarise_in_experiments_json(seeded_run):
    config, result = seeded_run
    run_dir = result["run_dir"]
    names = list(result["stages"])
    assert names[:2] == ["world", "tfrecords"]  # once, not per seed
    for seed in (0, 1):
        assert f"seed_{seed}/train_gan" in names and f"seed_{seed}/eval_{ROW}" in names
        assert os.path.isdir(os.path.join(run_dir, f"seed_{seed}", "reid", ROW))
        for stage in ("train_gan", f"train_{ROW}"):
            assert stages_lib.read_manifest(run_dir, f"seed_{seed}/{stage}")["config"]["seed"] == seed
    assert "seed_0/report" in names and "seed_1/report" not in names  # the single-run report: first seed only
    assert not os.path.exists(os.path.join(run_dir, "reid"))  # nothing trained outside the seed folders
    gan_dirs = [stages_lib.read_manifest(run_dir, f"seed_{s}/train_gan")["config"]["domain_dirs"] for s in (0, 1)]
    assert gan_dirs[0] == gan_dirs[1] == [os.path.join(run_dir, "tfrecords", d) for d in
                                          ("synmarket", "synduke", "syncuhk")]

    with open(os.path.join(run_dir, "experiments.json")) as f:
        summary = json.load(f)
    assert summary["setting"]["seeds"] == [0, 1] and summary["setting"]["targets"] == ["synduke"]
    assert summary["setting"]["wall_seconds"] == pytest.approx(sum(summary["timings"].values()))
    (row,) = summary["rows"]
    assert (row["key"], row["table"]) == (ROW, "table2") and set(row["paper"]) == {"mAP", "R-1", "R-5", "R-10"}
    for metric, entry in row["per_target"]["synduke"].items():
        eval_metrics = [stages_lib.read_manifest(run_dir, f"seed_{s}/eval_{ROW}")["outputs"]["metrics"]["synduke"]
                        for s in (0, 1)]
        column = {"mAP": "mAP", "R-1": "rank1", "R-5": "rank5", "R-10": "rank10"}[metric]
        assert entry["per_seed"] == {str(s): pytest.approx(100 * eval_metrics[s][column]) for s in (0, 1)}
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(statistics.mean(entry["per_seed"].values()))
        assert entry["lo"] <= entry["mean"] <= entry["hi"] and set(entry["bootstrap_ci"]) == {"0", "1"}
    distances = summary["domain_distance"]
    assert set(distances["per_seed"]) == {"0", "1"}
    original = distances["aggregate"]["synduke"]["original"]
    assert original["mean"] == pytest.approx(statistics.mean(original["per_seed"].values()))
    assert set(summary["quality"]["aggregate"]["synmarket"]["soft_mask"]) == set(experiments.QUALITY_METRICS)
    # The quality claim reads the missed-body PSNR of the source's train split: measured on both seeds.
    (missed,) = [c for c in summary["claims"] if c["measure"] == "missed_psnr" and c["target"] == "synmarket"]
    assert missed["seeds"] == [0, 1] and missed["verdict"] != "not run"
    # The page over seeds: the report's experiments section alone, with this run's row on its target.
    with open(result["experiments_page"]) as f:
        page = f.read()
    assert result["experiments_page"] == os.path.join(run_dir, "experiments.html")
    assert '<section id="experiments">' in page and '<section id="reid">' not in page
    assert f'data-key="{ROW}"' in page and 'data-target="synduke"' in page


@pytest.mark.slow
def test_a_removed_stage_output_of_seed_1_reruns_only_that_seeds_stage_and_dependents(seeded_run):
    config, result = seeded_run
    run_dir = result["run_dir"]
    seed0_before = {name: stages_lib.read_manifest(run_dir, name)["run_id"] for name in result["stages"]
                    if not name.startswith("seed_1/")}
    shutil.rmtree(os.path.join(run_dir, "seed_1", "reid", ROW))
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        _one_row(patch)
        again = experiments.run_experiments(config, log=lines.append)
    ran = [name for name, stage in again["stages"].items() if stage["status"] == "ran"]
    # quality reads ide_original's features (identity kept by the style transfers), so it re-runs too.
    assert ran == [f"seed_1/train_{ROW}", f"seed_1/eval_{ROW}", "seed_1/quality", "seed_1/tables"]
    assert "missing" in again["stages"][f"seed_1/train_{ROW}"]["reason"]
    assert any(line.startswith(f"[stage") and f"seed_1/train_{ROW}] running" in line for line in lines)
    assert {name: stages_lib.read_manifest(run_dir, name)["run_id"] for name in seed0_before} == seed0_before


def test_seeds_must_be_distinct_non_negative_integers():
    for bad in (["0", "x"], ["1", "1"], ["-1"]):
        with pytest.raises(ValueError, match=r"`seeds` \(flag --seeds\).*Received"):
            config_lib.merge_config({"seeds": bad})
