"""The main job end to end on the tiny preset (one run per test session), its resume, and its config parsing."""

import dataclasses
import json
import os
import re

import pytest
from PIL import Image

from bgshift_tf.core import precision
from bgshift_tf.training import gan_run
from bgshift_tf.workflow import config as config_lib
from bgshift_tf.workflow import experiments, main_job, model_table, report_data
from bgshift_tf.workflow import stages as stages_lib

TINY_FLAGS = os.path.join(os.path.dirname(__file__), "..", "bgshift_tf", "configs", "tiny.flags")
MODELS = ["ide_original", "ide_softmask", "da2s"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Runs the tiny pipeline once: (config, run_dir, stage results, log lines)."""
    config = {**config_lib.config_from_flagfile(TINY_FLAGS), "runs_root": str(tmp_path_factory.mktemp("runs"))}
    lines = []
    result = main_job.run_main_job(config, log=lines.append)
    return config, result["run_dir"], result["stages"], lines


@pytest.mark.slow
def test_tiny_pipeline_runs_every_stage_and_writes_timings(tiny_run):
    _, run_dir, stages, _ = tiny_run
    expected = (["world", "tfrecords", "train_gan", "generate"] + [f"train_{m}" for m in MODELS]
                + [f"eval_{m}" for m in MODELS] + ["quality", "domain_distance", "export", "figures", "report"])
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


def test_trainer_flagfile_nested_bool_and_override_parsed_by_absl(tmp_path):
    base = tmp_path / "base.flags"
    base.write_text("# comment\n--epochs=5\n--use_se\n--batch_size=8\n")
    top = tmp_path / "top.flags"
    top.write_text(f"--flagfile={base}\n--batch_size=16\n--nouse_isdc\n")
    defaults = {"epochs": 1, "use_se": False, "use_isdc": True, "batch_size": 2, "learning_rate": 0.1,
                "dirs": []}
    assert config_lib.trainer_config(str(top), [], defaults, "reid") == {
        "epochs": 5, "use_se": True, "batch_size": 16, "use_isdc": False}
    config = config_lib.trainer_config(str(top), ["learning_rate=0.5", "epochs=7", "dirs=a,b"], defaults, "reid")
    assert config == {"epochs": 7, "use_se": True, "use_isdc": False, "batch_size": 16, "learning_rate": 0.5,
                      "dirs": ["a", "b"]}
    with pytest.raises(ValueError, match=r"`reid_overrides` sets \['bogus'\]"):
        config_lib.trainer_config(str(top), ["bogus=1"], defaults, "reid")
    with pytest.raises(ValueError, match=r"flag --epochs=x: invalid literal"):
        config_lib.trainer_config(str(top), ["epochs=x"], defaults, "reid")
    with pytest.raises(ValueError, match="must be key=value"):
        config_lib.trainer_config("", ["epochs"], defaults, "reid")


def test_trainer_flagfile_with_an_unknown_key_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("--epochs=5\n--lambda_typo=3\n")
    with pytest.raises(ValueError, match=rf"gan flagfile '{bad}' \(or one it includes\) sets 'lambda_typo'"):
        config_lib.trainer_config(str(bad), [], gan_run.DEFAULT_CONFIG, "gan")
    top = tmp_path / "top.flags"
    top.write_text(f"--flagfile={bad}\n")
    with pytest.raises(ValueError, match=r"sets 'lambda_typo', which is not one of its keys"):
        config_lib.trainer_config(str(top), [], gan_run.DEFAULT_CONFIG, "gan")
    with pytest.raises(ValueError, match=r"pipeline flagfile .* sets 'epochs'"):
        config_lib.config_from_flagfile(str(bad))


def test_report_lists_the_gan_settings_that_differ_from_the_paper(monkeypatch):
    configs = os.path.abspath(os.path.dirname(TINY_FLAGS))
    monkeypatch.chdir(os.path.dirname(os.path.dirname(configs)))  # nested flagfile paths are repo-relative
    defaults = gan_run.DEFAULT_CONFIG
    paper = config_lib.trainer_config(os.path.join(configs, "gan_paper.flags"), [], defaults, "gan")
    assert gan_run.settings_not_from_paper(paper) == []
    demo = config_lib.trainer_config(os.path.join(configs, "gan_demo.flags"), [], defaults, "gan")
    changed = gan_run.settings_not_from_paper(demo)
    assert "lambda_bgs 50 [5]" in changed and "image_height 64 [256]" in changed and "n_critic 1 [5]" in changed
    assert not any(item.startswith(("lambda_rec", "lambda_sc", "batch_size", "max_steps")) for item in changed)
    tiny = config_lib.trainer_config(os.path.join(configs, "gan_tiny.flags"), [], defaults, "gan")
    assert "max_steps 4 [epochs 5]" in gan_run.settings_not_from_paper(tiny)


def test_bad_pipeline_settings_name_the_flag():
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    assert tiny["ide_variants"] == ["original", "soft_mask"] and tiny["export_tflite"] == []
    with pytest.raises(ValueError, match="`source` must be one of the domains"):
        main_job.layout({**tiny, "source": "market"})
    with pytest.raises(ValueError, match="`targets` must be domains other than the source"):
        main_job.layout({**tiny, "targets": ["synmarket"]})
    with pytest.raises(ValueError, match="`ide_variants` .* must be among"):
        config_lib.merge_config({**tiny, "ide_variants": ["sketch"]})
    with pytest.raises(ValueError, match=r"`ide_variants` .* Received: \['softmask'\]"):
        config_lib.merge_config({**tiny, "ide_variants": ["softmask"]})  # the old spelling is gone
    with pytest.raises(ValueError, match=r"unknown pipeline settings \['nope'\]"):
        config_lib.merge_config({"nope": 1})
    with pytest.raises(ValueError, match=r"`precision` \(flag --precision\) must be one of auto, float32, .*"
                                         r"Received: precision='bf16'"):
        main_job.layout({**tiny, "precision": "bf16"})


def test_model_table_drives_training_and_evaluation_inputs_and_rejects_unknown_keys(tmp_path):
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    ctx = main_job.layout({**tiny, "runs_root": str(tmp_path)})
    generated = os.path.join(ctx.run_dir, "generated")
    da2s = model_table.reid_train_config(ctx, "da2s")
    assert da2s["stream1_dir"] == os.path.join(generated, "synmarket_soft_mask")
    assert da2s["stream2_dir"] == os.path.join(generated, "synmarket_style_transfer_to_synduke")
    assert (da2s["use_se"], da2s["use_isdc"], da2s["train_dir"]) == (True, True, "")
    hard = model_table.reid_train_config(ctx, "ide_hardmask")
    assert hard["hard_mask"] is True and hard["train_dir"] == ctx.tfrecords("synmarket")
    nosc = model_table.reid_train_config(ctx, "ide_softmask_nosc")
    assert nosc["train_dir"] == os.path.join(ctx.run_dir, "generated_nosc", "synmarket_soft_mask")
    assert model_table.eval_inputs(ctx, "da2s", "synduke") == (
        ctx.tfrecords("synduke"), os.path.join(generated, "synduke_soft_mask"), False, "")
    assert model_table.eval_inputs(ctx, "da2s_2soft", "synduke") == (
        os.path.join(generated, "synduke_soft_mask"), None, True, "")
    folder, _, _, note = model_table.eval_inputs(ctx, "ide_hardmask", "synduke")  # nothing generated yet
    assert folder == ctx.tfrecords("synduke") and "no masks on query/gallery" in note
    assert model_table.main_model_keys(["original", "soft_mask"], True) == ["ide_original", "ide_softmask", "da2s"]
    assert experiments.experiment_keys()[:2] == ["ide_original", "ide_hardmask"]
    for bad in (lambda: model_table.model("ide_sketch"), lambda: main_job.reid_stage(ctx, "ide_sketch"),
                lambda: main_job.main_job_stages(ctx, extra_models=["da2s_typo"])):
        with pytest.raises(ValueError, match=r"unknown re-ID model key 'ide_sketch'|'da2s_typo'"):
            bad()


def test_a_stage_whose_dependency_is_missing_fails_before_anything_runs(tmp_path):
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    ctx = main_job.layout({**tiny, "runs_root": str(tmp_path)})
    stages = main_job.main_job_stages(ctx)
    orphan = stages_lib.Stage("sketch", dict, deps=["train_gan_sketch"])
    with pytest.raises(ValueError, match=r"stage 'sketch' depends on \['train_gan_sketch'\]"):
        stages_lib.run_stages(ctx.run_dir, stages[:-1] + [orphan])
    assert not os.path.exists(os.path.join(ctx.run_dir, "timings.json"))  # nothing ran


def test_pipeline_precision_replaces_the_trainer_flagfiles_unless_their_overrides_set_it(tmp_path):
    flagfile = tmp_path / "gan.flags"
    flagfile.write_text("--precision=mixed_float16\n--max_steps=3\n")
    defaults = gan_run.DEFAULT_CONFIG
    assert config_lib.trainer_config(str(flagfile), [], defaults, "gan")["precision"] == "mixed_float16"
    assert config_lib.trainer_config(str(flagfile), [], defaults, "gan", precision="float32")["precision"] == "float32"
    assert config_lib.trainer_config(str(flagfile), ["precision=mixed_bfloat16"], defaults, "gan",
                                     precision="float32")["precision"] == "mixed_bfloat16"
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    ctx = main_job.layout({**tiny, "runs_root": str(tmp_path), "precision": "mixed_bfloat16",
                           "reid_overrides": ["precision=float32"]})
    assert ctx.gan_config()["precision"] == ctx.gan_config("_nosc", lambda_sc=0)["precision"] == "mixed_bfloat16"
    assert model_table.reid_train_config(ctx, "da2s")["precision"] == "float32"


# The stages that run a network, by name: they carry the precision in their config.
COMPUTING_STAGES = re.compile(r"train_gan\w*|generate\w*|train_\w+|eval_\w+|quality|domain_distance|export|figures")


def _run_stubs(run_dir, stages):
    """`run_stages` on `stages` with their work replaced by nothing: {name: (status, reason)}."""
    stubs = [dataclasses.replace(stage, fn=dict, clean_paths=()) for stage in stages]
    results = stages_lib.run_stages(run_dir, stubs, log=lambda line: None)
    return {name: (result["status"], result["reason"]) for name, result in results.items()}


def test_a_changed_precision_reruns_exactly_the_stages_that_run_a_network(tmp_path, monkeypatch):
    tiny = {**config_lib.config_from_flagfile(TINY_FLAGS), "runs_root": str(tmp_path)}
    ctx = main_job.layout({**tiny, "precision": "mixed_bfloat16"})
    bf16 = main_job.main_job_stages(ctx)
    computing = {stage.name for stage in bf16 if COMPUTING_STAGES.fullmatch(stage.name)}
    assert {"train_gan", "generate", "train_da2s", "eval_da2s", "quality", "domain_distance", "export",
            "figures"} <= computing
    assert {stage.name for stage in bf16 if stage.config.get("precision") == "mixed_bfloat16"} == computing
    _run_stubs(ctx.run_dir, main_job.main_job_stages(main_job.layout(tiny)))  # float32, the default
    results = _run_stubs(ctx.run_dir, bf16)
    assert {name for name, (_, reason) in results.items() if reason == "config changed: precision"} == computing
    assert results["world"][0] == results["tfrecords"][0] == "skipped"
    others = {name: reason for name, (status, reason) in results.items() if status == "ran" and name not in computing}
    assert set(others) == {"report"}
    assert all(reason.startswith("upstream stage(s) re-ran") for reason in others.values())
    # `auto` is resolved once per run: where it picks mixed_bfloat16, the stages above are up to date.
    monkeypatch.setattr(precision, "device_facts", lambda: precision.DeviceFacts(cpu_flags=frozenset({"amx_bf16"})))
    auto = main_job.layout({**tiny, "precision": "auto"})
    assert auto.precision == "mixed_bfloat16"
    assert {status for status, _ in _run_stubs(ctx.run_dir, main_job.main_job_stages(auto)).values()} == {"skipped"}


def _row(key, name, mAP, r1):
    return {"key": key, "name": name, "mAP": mAP, "R-1": r1, "R-5": r1 + 5, "R-10": r1 + 8,
            "paper": {"mAP": 1.0, "R-1": 2.0, "R-5": 3.0, "R-10": 4.0}}


def test_experiment_tables_ordering_checks_and_markdown():
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


def test_the_two_domain_soft_mask_row_trains_one_sbsgan_and_ide_per_target(tmp_path):
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    ctx = main_job.layout({**tiny, "runs_root": str(tmp_path), "targets": []})  # every other domain
    source, targets = ctx.source, ctx.targets
    assert len(targets) == 2
    stages = {s.name: s for s in main_job.main_job_stages(ctx, extra_models=["ide_softmask_2dom"])}
    for target in targets:
        gan = stages[f"train_gan_2dom_{target}"]
        # SBSGAN on the source and this target only, in run order (labels = positions in domain_dirs).
        assert gan.config["domain_dirs"] == [ctx.tfrecords(d) for d in ctx.domains if d in (source, target)]
        assert gan.config["run_dir"] == os.path.join(ctx.run_dir, f"gan_2dom_{target}")
        assert stages[f"generate_2dom_{target}"].deps == [f"train_gan_2dom_{target}"]
        assert stages[f"generate_2dom_{target}"].config["source_splits"] == ["train"]  # tested on the target only
        ide = stages[f"train_ide_softmask_2dom_{target}"]
        assert ide.deps == [f"generate_2dom_{target}"]
        assert ide.config["train_dir"] == os.path.join(ctx.run_dir, f"generated_2dom_{target}", f"{source}_soft_mask")
        assert ide.config["run_dir"] == os.path.join(ctx.run_dir, "reid", f"ide_softmask_2dom_{target}")
        assert model_table.eval_inputs(ctx, "ide_softmask_2dom", target)[0] == os.path.join(
            ctx.run_dir, f"generated_2dom_{target}", f"{target}_soft_mask")
    assert "train_gan_2dom" not in stages and "train_ide_softmask_2dom" not in stages
    evaluation = stages["eval_ide_softmask_2dom"]
    assert evaluation.config["domains"] == targets  # each per-target IDE on its own target, not the source
    assert set(evaluation.deps) >= {f"train_ide_softmask_2dom_{t}" for t in targets} | {
        f"generate_2dom_{t}" for t in targets}
    # The paper's SBSGAN still trains on every domain.
    assert stages["train_gan"].config["domain_dirs"] == [ctx.tfrecords(d) for d in ctx.domains]
    assert model_table.table_keys("table2")[-1] == "ide_softmask_2dom"
    assert model_table.table_keys("table3")[2] == "da2s_isdcse"
    assert model_table.reid_train_config(ctx, "da2s_isdcse")["isdc_se"] is True
    assert model_table.reid_train_config(ctx, "da2s")["isdc_se"] is False


def test_cuhk03_classic_domains_are_scored_single_gallery_shot(tmp_path):
    real = {**config_lib.config_from_flagfile(TINY_FLAGS), "data": "real", "runs_root": str(tmp_path),
            "domain_names": ["m", "d", "c"], "domain_datasets": ["market1501", "dukemtmc", "cuhk03_classic"],
            "domain_data_dirs": ["/m", "/d", "/c.mat"], "domain_mask_dirs": ["", "", ""], "source": "m",
            "targets": ["d", "c"]}
    ctx = main_job.layout(real)
    assert [model_table.eval_mode(ctx, d) for d in ("m", "d", "c")] == ["standard", "standard", "cuhk03_sgs"]


def test_experiment_tables_cover_every_target(tmp_path, monkeypatch):
    tiny = config_lib.config_from_flagfile(TINY_FLAGS)
    ctx = main_job.layout({**tiny, "runs_root": str(tmp_path), "targets": []})
    first, second = ctx.targets
    rank1 = {first: 0.25, second: 0.5}

    def fake_eval(_, key):
        return {d: {"mAP": r / 2, "rank1": r, "rank5": r, "rank10": r} for d, r in rank1.items()}

    monkeypatch.setattr(report_data, "read_eval", fake_eval)
    tables = experiments.build_tables(ctx)
    assert list(tables) == [first, second]
    for target, r in rank1.items():
        assert tables[target]["setting"] == f"{ctx.source} → {target}"
        assert {row["R-1"] for row in tables[target]["table2"] + tables[target]["table3"]} == {100 * r}
    assert "ide_softmask_2dom" in [row["key"] for row in tables[second]["table2"]]
    assert f"{ctx.source} → {second}" in experiments.to_markdown(tables[second], "table3")
