"""The study's parts merged (`workflow.study_merge`) and rendered (`report.study_md`): agreeing and
disagreeing parts, verdicts on constructed per-query data, the seeds / queries decomposition."""

import os
import subprocess
import sys

import numpy as np
import pytest

from bgshift_tf.core import atomic_io, errors, precision
from bgshift_tf.evaluation import stats
from bgshift_tf.report import results_md, study_md
from bgshift_tf.workflow import provenance, study_merge, study_part

TARGET = "synduke"
NUM_IDS, PER_ID = 150, 2  # 300 queries
PIDS = np.repeat(np.arange(1, NUM_IDS + 1), PER_ID)


def _definition(lambda_sc=1.0):
    return {"stages": {"world": {"preset": "tiny", "seed": 0},
                       "train_gan": {"lambda_sc": lambda_sc, "seed": "<seed>", "precision": "float32"},
                       "train_ide_original": {"epochs": 8, "seed": "<seed>", "precision": "float32"}}}


def _part(seed, rank1, definition=None):
    """A part of `seed` whose rows' per-query rank-1 hits are `rank1` ({row key: 0/1 array}); AP = rank-1."""
    definition = definition or _definition()
    rows, bootstrap, models = {TARGET: {}}, {TARGET: {}}, {}
    for key, hits in rank1.items():
        hits = np.asarray(hits, np.float64)
        value = 100 * hits.mean()
        rows[TARGET][key] = {"mAP": value, "R-1": value, "R-5": value, "R-10": value, "mINP": value}
        bootstrap[TARGET][key] = {"R-1": None, "mAP": None}
        models[key] = study_part.encode_per_query({"rank1": hits, "ap": hits, "valid": np.ones(len(hits), bool)})
    pid = study_part._b64(PIDS, "<i4")
    return {"format": study_part.PART_FORMAT, "seed": seed, "study_hash": study_part.study_hash(definition),
            "study": definition, "setting": {"source": "synmarket", "targets": [TARGET], "data": "synthetic",
                                             "preset": "tiny", "world_seed": 0},
            "rows": rows, "bootstrap_ci": bootstrap, "per_query": {TARGET: {"pid": pid, "models": models}},
            "quality": {"synmarket": {"split": "train", "metrics": {"soft_mask": {"fg_psnr": 16.0 + seed}}}},
            "domain_distance": {TARGET: {"original": 2.0 + seed, "soft_mask": 1.0}},
            "reid_curves": {"train_ide_original": {"curve": [{"epoch": 1, "step": 90, "rank1": 0.25},
                                                             {"epoch": 2, "step": 180, "rank1": 0.375}],
                                                   "best_step": 180, "stopped_step": None, "patience": 2,
                                                   "num_holdout_ids": 60}},
            "timings": {"world": {"seconds": 60.0, "status": "ran"},
                        "train_gan": {"seconds": 600.0 + seed, "status": "ran"}},
            "total_seconds": 660.0 + seed, "code": {"commit": "abc123def456", "dirty": False},
            "machine": {"cpu": "Test CPU", "cpus": 2, "platform": "Linux"}, "written": "now"}


def _hits(rate, rng):
    return (rng.random(len(PIDS)) < rate).astype(np.float64)


def _claim(entry, claim_key):
    (result,) = [r for r in entry["claims"] if r["claim"] == claim_key and r["target"] == TARGET]
    return result


@pytest.mark.parametrize("hard_rate, expected", [(0.8, "holds"), (0.1, "reversed"), (None, "inconclusive")])
def test_verdicts_on_constructed_per_query_data(hard_rate, expected):
    rng = np.random.default_rng(0)
    parts = []
    for seed in (0, 1, 2):
        original = _hits(0.4, rng)
        # None: the hard-mask model hits exactly the same queries (no difference at all)
        hard = original.copy() if hard_rate is None else _hits(hard_rate, rng)
        parts.append(_part(seed, {"ide_original": original, "ide_hardmask": hard}))
    result = _claim(study_merge.merge(parts), "R-1:ide_original<ide_hardmask")
    assert result["interval"] == "seeds+queries" and result["verdict"] == expected
    if hard_rate is not None:
        assert np.sign(result["mean"]) == np.sign(hard_rate - 0.4)
        assert result["query_half_width"] > 0 and result["seed_half_width"] > 0


def test_seed_query_interval_names_the_dominant_term():
    rng = np.random.default_rng(1)
    # Seeds disagree a lot, queries are consistent within a seed: the seed term dominates.
    offsets = np.array([[-20.0], [0.0], [25.0]])
    seedy = stats.seed_query_interval(offsets + rng.normal(0, 1, (3, len(PIDS))), PIDS)
    assert seedy["dominant"] == "seeds" and seedy["seed_half_width"] > seedy["query_half_width"]
    # Every seed agrees on the mean but each query is noisy and shared across seeds: queries dominate.
    shared = rng.normal(0, 100, len(PIDS))
    queries = stats.seed_query_interval(np.stack([shared + rng.normal(0, 0.1, len(PIDS)) for _ in range(3)]), PIDS)
    assert queries["dominant"] == "queries"
    assert queries["half_width"] == pytest.approx(np.hypot(queries["seed_half_width"], queries["query_half_width"]))
    one_seed = stats.seed_query_interval(shared[None, :], PIDS)
    assert one_seed["lo"] is None and one_seed["query_half_width"] > 0


def test_identity_standard_error_counts_identities_not_queries():
    rng = np.random.default_rng(2)
    per_identity = rng.normal(0, 1, NUM_IDS)
    duplicated = np.repeat(per_identity, PER_ID)  # the two queries of an identity are the same value
    clustered = stats.identity_standard_error(duplicated, PIDS)
    naive = stats.identity_standard_error(duplicated, np.arange(len(PIDS)))
    assert clustered == pytest.approx(stats.identity_standard_error(per_identity, np.arange(NUM_IDS)), rel=0.02)
    assert clustered > 1.3 * naive


def test_agreeing_parts_merge_into_rows_with_seed_and_query_intervals(tmp_path):
    rng = np.random.default_rng(3)
    parts = [_part(seed, {"ide_original": _hits(0.3 + 0.1 * seed, rng)}) for seed in (0, 1)]
    for part in parts:
        atomic_io.write_json(study_part.part_path(str(tmp_path), part["seed"]), part)
    entry = study_merge.load_agreeing(str(tmp_path))
    assert entry["study"]["seeds"] == [0, 1] and entry["study"]["refused"] == []
    (row,) = entry["rows"]
    cell = row["per_target"][TARGET]["R-1"]
    values = [part["rows"][TARGET]["ide_original"]["R-1"] for part in parts]
    assert cell["mean"] == pytest.approx(np.mean(values)) and cell["n"] == 2
    assert cell["seed_query"]["mean"] == pytest.approx(np.mean(values), abs=1e-3)
    assert cell["seed_query"]["lo"] < cell["seed_query"]["mean"] < cell["seed_query"]["hi"]
    assert entry["quality"]["aggregate"]["synmarket.metrics.soft_mask.fg_psnr"]["mean"] == pytest.approx(16.5)
    text = study_md.render(entry, "make study SEEDS=k")
    assert text.splitlines()[0] == f"# Reference study: 2 seeds (0, 1), study hash `{parts[0]['study_hash']}`"
    assert "**Preliminary: 2 of the 3 planned seeds have run.**" in text
    (line,) = [l for l in text.splitlines() if l.startswith("| Original |")]
    assert "(seeds ±" in line and "| 17.7 | 33.5 |" in line
    assert "on 60 held-out identities: epoch 1: 25.0; epoch 2: 37.5. Best at step 180" in text


def test_parts_from_different_cpus_name_each_cpu_with_its_extensions(tmp_path):
    # "AMD EPYC" is both a Zen 3 (AVX2 only) and a Zen 4 (AVX512-BF16): the documents must tell them apart.
    rng = np.random.default_rng(4)
    parts = [_part(seed, {"ide_original": _hits(0.4, rng)}) for seed in (0, 1, 2)]
    parts[0]["machine"] = {"cpu": "AMD EPYC", "cpus": 2, "platform": "Linux",
                           "isa": provenance.isa({"avx2", "avx512f", "avx512_bf16", "sse2"})}
    parts[1]["machine"] = {"cpu": "AMD EPYC", "cpus": 2, "platform": "Linux", "isa": provenance.isa({"avx2"})}
    parts[2]["machine"] = {"cpu": "AMD EPYC", "cpus": 2, "platform": "Linux"}  # written before the ISA was
    for part in parts:
        atomic_io.write_json(study_part.part_path(str(tmp_path), part["seed"]), part)
    entry = study_merge.load_agreeing(str(tmp_path))
    assert [p["cpu"] for p in entry["study"]["parts"]] == [
        "AMD EPYC (avx2, avx512f, avx512_bf16)", "AMD EPYC (avx2)", "AMD EPYC (ISA not recorded)"]
    text = study_md.render(entry, "make study SEEDS=k")
    (setting,) = [line for line in text.splitlines() if line.startswith("- Machine:")]
    assert "AMD EPYC (avx2, avx512f, avx512_bf16); AMD EPYC (avx2); AMD EPYC (ISA not recorded)" in setting
    assert "| 1 | 11 min 01 s | `abc123def456` | AMD EPYC (avx2) |" in text


def test_this_machines_record_holds_its_extensions(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"fpu", "avx2", "amx_bf16", "avx512f"}))
    assert provenance.machine()["isa"] == ["avx2", "avx512f", "amx_bf16"]
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"fpu", "sse2"}))
    assert provenance.cpu_text(provenance.machine()).endswith("(none of avx2/avx512f/avx512_bf16/amx_bf16)")


def test_disagreeing_parts_are_refused_naming_file_and_flag(tmp_path):
    rng = np.random.default_rng(4)
    other = _definition(lambda_sc=0.5)
    parts = [_part(0, {"ide_original": _hits(0.3, rng)}), _part(1, {"ide_original": _hits(0.3, rng)}),
             _part(2, {"ide_original": _hits(0.3, rng)}, definition=other)]
    paths = [atomic_io.write_json(study_part.part_path(str(tmp_path), p["seed"]), p) for p in parts]
    entry = study_merge.load_agreeing(str(tmp_path))
    assert entry["study"]["seeds"] == [0, 1]
    (refused,) = entry["study"]["refused"]
    assert refused["path"] == paths[2] and refused["differs"] == ["train_gan.lambda_sc"]
    text = study_md.render(entry, "make study")
    assert f"Refused `{paths[2]}`" in text and "train_gan.lambda_sc" in text
    # Asking for the minority's hash keeps that part alone; a tie between hashes is refused outright.
    alone = study_merge.load_agreeing(str(tmp_path), study_hash=parts[2]["study_hash"])
    assert alone["study"]["seeds"] == [2] and {r["path"] for r in alone["study"]["refused"]} == set(paths[:2])
    os.remove(paths[1])
    with pytest.raises(errors.DataError, match="none in the majority"):
        study_merge.load_agreeing(str(tmp_path))


def test_two_parts_of_one_seed_and_bad_files_are_errors(tmp_path):
    rng = np.random.default_rng(5)
    part = _part(0, {"ide_original": _hits(0.3, rng)})
    atomic_io.write_json(str(tmp_path / "seed_0.json"), part)
    atomic_io.write_json(str(tmp_path / "seed_00.json"), part)
    with pytest.raises(errors.DataError, match=r"two parts of seed\(s\) \[0\]"):
        study_merge.load_agreeing(str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "seed_3.json").write_text("{}")
    with pytest.raises(errors.DataError, match="seed_3.json is not a study part"):
        study_merge.load_agreeing(str(bad))
    with pytest.raises(errors.MissingInputError, match="no seed_\\*.json part files"):
        study_merge.load_agreeing(str(tmp_path / "empty"))


def test_per_query_encoding_round_trips():
    rng = np.random.default_rng(6)
    arrays = {"rank1": rng.random(50).round(), "ap": rng.random(50), "valid": rng.random(50) > 0.2}
    decoded = study_part.decode_per_query(study_part.encode_per_query(arrays), study_part._b64(PIDS[:50], "<i4"))
    assert np.array_equal(decoded["pid"], PIDS[:50]) and np.array_equal(decoded["valid"], arrays["valid"])
    assert np.abs(decoded["ap"] - arrays["ap"]).max() <= 0.5 / study_part.SCALE + 1e-12
    assert np.array_equal(decoded["rank1"], arrays["rank1"])


def test_wide_rank1_intervals_say_which_term_dominates():
    rng = np.random.default_rng(7)
    parts = []
    for seed, rate in zip((0, 1, 2), (0.2, 0.5, 0.8)):  # the hard-mask model's gain swings with the seed
        original = _hits(0.4, rng)
        parts.append(_part(seed, {"ide_original": original, "ide_hardmask": _hits(rate, rng)}))
    entry = study_merge.merge(parts)
    result = _claim(entry, "R-1:ide_original<ide_hardmask")
    assert (result["hi"] - result["lo"]) / 2 > study_md.WIDE_HALF_WIDTH and result["dominant"] == "seeds"
    text = "\n".join(study_md.decomposition_lines(entry["claims"]))
    assert "the seeds term dominates in" in text and "| R-1:ide_original<ide_hardmask | synduke |" in text


def test_results_entry_point_refuses_and_writes(tmp_path):
    rng = np.random.default_rng(8)
    parts_dir = tmp_path / "study"
    for part in (_part(0, {"ide_original": _hits(0.3, rng)}), _part(1, {"ide_original": _hits(0.4, rng)}),
                 _part(2, {"ide_original": _hits(0.4, rng)}, definition=_definition(lambda_sc=0.0))):
        atomic_io.write_json(study_part.part_path(str(parts_dir), part["seed"]), part)
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "bgshift_tf.results", f"--parts={parts_dir}", f"--out={out}"],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    assert f"refused {parts_dir / 'seed_2.json'}" in done.stdout and "train_gan.lambda_sc" in done.stdout
    text = out.read_text()
    assert text.startswith("# Reference study: 2 seeds (0, 1), study hash") and results_md.HAND_WRITTEN_MARKER in text


def test_the_study_is_compared_with_the_demos_soft_masks(tmp_path):
    rng = np.random.default_rng(4)
    for seed in (0, 1):
        part = _part(seed, {"ide_original": _hits(0.3, rng)})
        part["quality"]["synmarket"]["metrics"]["soft_mask"]["bg_energy"] = 0.10 + 0.02 * seed  # mean 0.11
        atomic_io.write_json(study_part.part_path(str(tmp_path), seed), part)
    # Without a reference the section says it is not checked.
    assert "so this is not checked" in study_md.render(study_merge.load_agreeing(str(tmp_path)), "make study")
    demo = tmp_path / "quality.json"  # a demo run's quality.json: study PSNR (16.5) below it, bg energy better
    atomic_io.write_json(str(demo), {"synmarket": {"split": "query", "metrics": {
        "soft_mask": {"fg_psnr": 17.0, "fg_ssim": 0.5, "bg_energy": 0.15, "checkerboard": 0.1},
        "original": {"fg_psnr": float("inf")}}}})
    path = study_merge.save_demo_reference(str(demo), str(tmp_path))
    assert os.path.basename(path) == study_merge.DEMO_REFERENCE
    entry = study_merge.load_agreeing(str(tmp_path))
    assert entry["study"]["seeds"] == [0, 1]  # the reference is not read as a part
    rows = {r["figure"]: r for r in entry["demo_quality"]["rows"]}
    assert set(rows) == {"fg_psnr", "bg_energy"}  # only the figures both measured
    assert rows["fg_psnr"]["at_least_demo"] is False and rows["bg_energy"]["at_least_demo"] is True
    assert rows["bg_energy"]["study"]["mean"] == pytest.approx(0.11)
    text = study_md.render(entry, "make study")
    assert "At least the demo's: **1 of 2** figures." in text
    (line,) = [l for l in text.splitlines() if l.startswith("| synmarket | fg_psnr |")]
    assert line.endswith("| 17.000 | **no** |")
    with pytest.raises(errors.MissingInputError, match="--demo_quality=.*nowhere.json"):
        study_merge.save_demo_reference(str(tmp_path / "nowhere.json"), str(tmp_path))


def test_the_plain_reading_names_the_row_pair_of_each_verdict():
    rng = np.random.default_rng(6)
    parts = [_part(seed, {"ide_original": _hits(0.2, rng), "ide_hardmask": _hits(0.6, rng)}) for seed in (0, 1, 2)]
    entry = study_merge.merge(parts)
    (reading,) = [l for l in study_md.reading_lines(entry) if l.startswith("Holds:")]
    assert f"original < hard mask (ide_original<ide_hardmask, {TARGET})" in reading
