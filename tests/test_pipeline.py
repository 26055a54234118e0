"""The main job end to end on the tiny preset (one run per test session), its resume, and its config parsing."""

import json
import os
import re

import pytest
from PIL import Image

from bgshift_tf.workflow import main_job
from bgshift_tf.workflow import stages as stages_lib

TINY_FLAGS = os.path.join(os.path.dirname(__file__), "..", "bgshift_tf", "configs", "tiny.flags")
MODELS = ["ide_original", "ide_softmask", "da2s"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Runs the tiny pipeline once: (config, run_dir, stage results, log lines)."""
    config = {**main_job.config_from_flagfile(TINY_FLAGS), "runs_root": str(tmp_path_factory.mktemp("runs"))}
    lines = []
    result = main_job.run_main_job(config, log=lines.append)
    return config, result["run_dir"], result["stages"], lines


@pytest.mark.slow
def test_tiny_pipeline_runs_every_stage_and_writes_timings(tiny_run):
    _, run_dir, stages, _ = tiny_run
    expected = (["world", "tfrecords", "train_gan", "generate"] + [f"train_{m}" for m in MODELS]
                + [f"eval_{m}" for m in MODELS] + ["quality", "domain_distance", "export", "report"])
    assert list(stages) == expected
    rows = stages_lib.read_timings(run_dir)
    assert [row["stage"] for row in rows] == expected
    assert all(row["seconds"] > 0 for row in rows)
    for name in expected:
        assert stages_lib.read_manifest(run_dir, name)["name"] == name


@pytest.mark.slow
def test_tiny_pipeline_report_has_every_section(tiny_run):
    _, run_dir, _, _ = tiny_run
    with open(os.path.join(run_dir, "report.html")) as f:
        page = f.read()
    for anchor in ("run", "domains", "sbsgan-images", "gan-losses", "domain-distance", "suppression-quality",
                   "reid", "ranked-lists", "exports"):
        assert f'<section id="{anchor}">' in page
    assert "Not available" not in page  # every section got its data
    assert "differ from the paper&#x27;s" in page or "differ from the paper's" in page
    # The SBSGAN grid is also a file beside the report: 8 rows (original .. reconstruction) of 32-px images x2.
    with Image.open(os.path.join(run_dir, "figures", "sbsgan_outputs.png")) as grid:
        assert grid.mode == "RGB" and grid.height > 8 * 64
    # contact sheet, SBSGAN grid, loss curves, t-SNE, ranked lists
    assert len(re.findall(r'<img src="data:image/(png|jpeg);base64,', page)) >= 5
    for text in ("Soft-mask", "Original", "Baseline + SE + ISDC (DA-2S)", "sbsgan_generator", "da2s_embedder",
                 "serving_default", "synmarket → synduke"):
        assert text in page


@pytest.mark.slow
def test_tiny_pipeline_exports_savedmodels_and_metrics(tiny_run):
    config, run_dir, _, _ = tiny_run
    for model in ("sbsgan_generator", "da2s_embedder"):
        assert os.path.isfile(os.path.join(run_dir, "saved_models", model, "1", "saved_model.pb"))
    assert os.path.isfile(os.path.join(run_dir, "saved_models", "models.config"))
    for model in MODELS:
        for domain in ("synduke", "synmarket"):
            with open(os.path.join(run_dir, "eval", model, f"{domain}.json")) as f:
                metrics = json.load(f)
            assert 0.0 <= metrics["mAP"] <= 1.0
            assert metrics["rank1"] <= metrics["rank5"] <= metrics["rank10"] <= 1.0
            assert metrics["num_valid_queries"] > 0
    # IDE on soft-mask images is tested on the target's soft-mask images, DA-2S on the originals.
    soft = stages_lib.read_manifest(run_dir, "eval_ide_softmask")["outputs"]["metrics"]["synduke"]
    assert soft["query_folder"].endswith(os.path.join("generated", "synduke_soft_mask"))


@pytest.mark.slow
def test_tiny_pipeline_resumes_at_a_removed_stage_and_its_dependents_only(tiny_run):
    config, run_dir, _, _ = tiny_run
    report = os.path.join(run_dir, "report.html")
    before = os.path.getmtime(report)
    os.remove(stages_lib.manifest_path(run_dir, "quality"))
    lines = []
    result = main_job.run_main_job(config, log=lines.append)
    ran = [name for name, entry in result["stages"].items() if entry["status"] == "ran"]
    assert ran == ["quality", "report"]
    assert result["stages"]["report"]["reason"] == "upstream stage(s) re-ran: quality"
    assert os.path.getmtime(report) > before
    assert any("quality] running (not complete yet)" in line for line in lines)
    assert sum("skipped: complete with the same config" in line for line in lines) == len(result["stages"]) - 2


def test_read_flagfile_nested_bool_and_override(tmp_path):
    base = tmp_path / "base.flags"
    base.write_text("# comment\n--epochs=5\n--use_se\n--batch_size=8\n")
    top = tmp_path / "top.flags"
    top.write_text(f"--flagfile={base}\n--batch_size=16\n--nouse_isdc\n")
    assert main_job.read_flagfile(str(top)) == {"epochs": "5", "use_se": "true", "batch_size": "16",
                                                "use_isdc": "false"}
    defaults = {"epochs": 1, "use_se": False, "use_isdc": True, "batch_size": 2, "learning_rate": 0.1}
    config = main_job.trainer_config(str(top), ["learning_rate=0.5", "epochs=7"], defaults, "reid")
    assert config == {"epochs": 7, "use_se": True, "use_isdc": False, "batch_size": 16, "learning_rate": 0.5}
    with pytest.raises(ValueError, match=r"reid settings \['bogus'\]"):
        main_job.trainer_config(str(top), ["bogus=1"], defaults, "reid")
    with pytest.raises(ValueError, match=r"`epochs` must be a int. Received: epochs='x'"):
        main_job.trainer_config(str(top), ["epochs=x"], defaults, "reid")
    with pytest.raises(ValueError, match="must be key=value"):
        main_job.trainer_config("", ["epochs"], defaults, "reid")


def test_report_lists_the_gan_settings_that_differ_from_the_paper(monkeypatch):
    from bgshift_tf.training.gan_run import DEFAULT_CONFIG

    configs = os.path.abspath(os.path.dirname(TINY_FLAGS))
    monkeypatch.chdir(os.path.dirname(os.path.dirname(configs)))  # nested flagfile paths are repo-relative
    paper = main_job.trainer_config(os.path.join(configs, "gan_paper.flags"), [], DEFAULT_CONFIG, "gan")
    assert main_job.gan_settings_not_from_paper(paper) == []
    demo = main_job.trainer_config(os.path.join(configs, "gan_demo.flags"), [], DEFAULT_CONFIG, "gan")
    changed = main_job.gan_settings_not_from_paper(demo)
    assert "lambda_bgs 50 [5]" in changed and "image_height 64 [256]" in changed and "n_critic 1 [5]" in changed
    assert not any(item.startswith(("lambda_rec", "lambda_sc", "batch_size", "max_steps")) for item in changed)
    tiny = main_job.trainer_config(os.path.join(configs, "gan_tiny.flags"), [], DEFAULT_CONFIG, "gan")
    assert "max_steps 4 [epochs 5]" in main_job.gan_settings_not_from_paper(tiny)


def test_bad_pipeline_settings_name_the_flag():
    tiny = main_job.config_from_flagfile(TINY_FLAGS)
    assert tiny["ide_variants"] == ["original", "softmask"] and tiny["export_tflite"] == []
    with pytest.raises(ValueError, match="`source` must be one of the domains"):
        main_job.Context(main_job.merge_config({**tiny, "source": "market"}))
    with pytest.raises(ValueError, match="`targets` must be domains other than the source"):
        main_job.Context(main_job.merge_config({**tiny, "targets": ["synmarket"]}))
    with pytest.raises(ValueError, match="`ide_variants` must be among"):
        main_job.merge_config({**tiny, "ide_variants": ["sketch"]})
    with pytest.raises(ValueError, match=r"unknown pipeline settings \['nope'\]"):
        main_job.merge_config({"nope": 1})


def _row(key, name, mAP, r1):
    return {"key": key, "name": name, "mAP": mAP, "R-1": r1, "R-5": r1 + 5, "R-10": r1 + 8,
            "paper": {"mAP": 1.0, "R-1": 2.0, "R-5": 3.0, "R-10": 4.0}}


def test_experiment_tables_ordering_checks_and_markdown():
    from bgshift_tf.workflow import experiments

    tables = {"setting": "a → b", "table2": [
        _row("ide_original", "Original", 10.0, 20.0), _row("ide_hardmask", "Hard mask", 12.0, 19.0),
        _row("ide_style", "Style", 11.0, 21.0), _row("ide_softmask_nosc", "Soft w/o", 13.0, 22.0),
        _row("ide_softmask", "Soft-mask", 14.0, 23.0)], "table3": [
        _row("da2s_base", "Base", 20.0, 30.0), _row("da2s_se", "SE", 21.0, 31.0), _row("da2s", "DA-2S", 22.0, 30.5),
        _row("da2s_2style", "2 style", 19.0, 29.0), _row("da2s_2soft", "2 soft", 18.0, 28.0)]}
    checks = experiments.ordering_checks(tables)
    assert checks["original < hard-mask < soft-mask (mAP)"] is True
    assert checks["original < hard-mask < soft-mask (R-1)"] is False  # hard mask 19 < original 20
    assert checks["soft-mask > soft-mask w/o L_sc (R-1)"] is True
    assert checks["DA-2S best in Table 3 (mAP)"] is True
    assert checks["DA-2S best in Table 3 (R-1)"] is False  # SE 31 > DA-2S 30.5
    tables["checks"] = checks
    table2 = experiments.to_markdown(tables, "table2").splitlines()
    assert "| Original | 10.0 | 20.0 | 25.0 | 28.0 | 1.0 | 2.0 | 3.0 | 4.0 |" in table2
    assert "original < hard-mask < soft-mask (R-1): no" in table2[-1]
    table3 = experiments.to_markdown(tables, "table3")
    assert "| DA-2S | 22.0 | 30.5 | 1.0 | 2.0 |" in table3
    assert "DA-2S best in Table 3 (R-1): no" in table3 and "original <" not in table3
