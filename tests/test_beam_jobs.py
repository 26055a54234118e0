"""Tests of the Beam batch jobs (`export/beam_jobs.py`) and the `batch_infer` entry point, on a tiny world:
freshly initialised models exported as SavedModels and a few 32x16 TFRecords made here. Every pipeline runs
on the default runner with Prism made unusable (see `no_prism`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.data import feature_shards, schema, shards
from bgshift_tf.data.input import make_eval_dataset
from bgshift_tf.evaluation.features import extract_features
from bgshift_tf.evaluation.run import compiled_embed
from bgshift_tf.export import beam_jobs
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.generation import translate
from bgshift_tf.models.generator import Generator
from bgshift_tf.training import loop
from export_helpers import REID_SIZE, tiny_ide
from tiny_records import SPLIT_SIZES, make_domain_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN_SIZE = (16, 8)  # the records are 32x16: both jobs resize


@pytest.fixture(autouse=True)
def no_prism(monkeypatch):
    """Beam's PrismRunner fails if anything here starts it (it would download its binary)."""
    from apache_beam.runners.portability.prism_runner import PrismRunner

    def refuse(*args, **kwargs):
        raise AssertionError("PrismRunner started")

    monkeypatch.setattr(PrismRunner, "run_pipeline", refuse)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Records (train 8, query 2, gallery 3; 2 shards each), a GAN run folder as train_gan leaves it and its
    generator's export, and an IDE embedder's export (exports/<model>/1)."""
    root = tmp_path_factory.mktemp("beam_world")
    records = make_domain_records(root / "records", "dom0", 0, splits=("train", "query", "gallery"))
    generator = Generator(num_domains=2, image_size=GEN_SIZE, base_filters=4, num_res_blocks=1)
    generator.soft_mask(tf.zeros([1, *GEN_SIZE, 3]))
    run_dir = str(root / "gan_run")
    atomic_io.write_json(os.path.join(run_dir, "config.json"),
                         {"generator": generator.get_config(), "domains": ["dom0", "dom1"]})
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), generator=generator)
    tf.train.CheckpointManager(checkpoint, loop.checkpoint_dir(run_dir), max_to_keep=1).save()
    exports = str(root / "exports")
    generator_dir = saved_model_lib.export_generator(generator, exports, version=1)
    ide = tiny_ide()
    embedder_dir = saved_model_lib.export_embedder(ide, exports, model_name="ide_embedder", version=1)
    return {"records": records, "run_dir": run_dir, "generator_dir": generator_dir, "ide": ide,
            "embedder_model_dir": os.path.dirname(embedder_dir), "embedder_dir": embedder_dir}


def _parsed(folder, split):
    return [schema.parse_example(r) for r in tf.data.TFRecordDataset(shards.shard_files(folder, split))]


def test_default_runner_is_the_in_process_fn_api_runner_never_prism():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.runners.portability.prism_runner import PrismRunner

    runner = beam_jobs.make_pipeline().runner
    assert isinstance(runner, FnApiRunner) and not isinstance(runner, PrismRunner)
    # Another runner goes to Beam by name, with its options unchanged.
    options = beam_jobs.make_pipeline("FlinkRunner", ["--flink_master=localhost:8081"])._options.get_all_options()
    assert options["runner"] == "FlinkRunner" and options["flink_master"] == "localhost:8081"


def test_features_job_equals_the_evaluation_features(world, tmp_path):
    out = str(tmp_path / "features")
    manifest = beam_jobs.run_job("features", model=world["embedder_model_dir"], in_dir=world["records"],
                                 out_dir=out, splits=["query", "gallery"], max_batch_size=2)
    info = saved_model_lib.read_export_info(world["embedder_dir"])
    assert manifest["content"] == schema.FEATURES_CONTENT and manifest["feature_dim"] == info["feature_dim"]
    assert manifest["model"]["version"] == 1 and manifest["model"]["path"] == world["embedder_dir"]
    assert manifest["dataset"] == "dom0" and sorted(manifest["splits"]) == ["gallery", "query"]
    in_manifest = shards.read_manifest(world["records"])
    # What `evaluate` computes: its batches (make_eval_dataset) through its compiled embed of the same model.
    embed = compiled_embed(world["ide"], two_inputs=False)
    for split in ("query", "gallery"):
        assert manifest["splits"][split]["shards"] == in_manifest["splits"][split]["shards"]
        expected = extract_features(make_eval_dataset(shards.shard_files(world["records"], split),
                                                      image_size=REID_SIZE, batch_size=4),
                                    lambda batch: embed(batch["image"]), progress=False)
        got = feature_shards.read_feature_shards(out, split)
        assert len(got["pids"]) == SPLIT_SIZES[split]
        np.testing.assert_array_equal(got["filenames"], expected.filenames)
        np.testing.assert_array_equal(got["pids"], expected.pids)
        np.testing.assert_array_equal(got["camids"], expected.camids)
        assert np.max(np.abs(got["features"] - expected.features)) <= 1e-5, split


def test_generation_jobs_equal_generate(world, tmp_path):
    generated = translate.translate_dataset(world["run_dir"], world["records"], str(tmp_path / "generate"),
                                            variants=["soft_mask", "style_transfer"], target_domain="dom1",
                                            batch_size=3, verbose=0)["outputs"]
    for job, target in (("soft_mask", None), ("style_transfer", 1)):
        out = str(tmp_path / job)
        manifest = beam_jobs.run_job(job, model=world["generator_dir"], in_dir=world["records"], out_dir=out,
                                     target_domain=target, max_batch_size=4)
        expected = shards.read_manifest(generated[job])
        assert set(manifest) == set(expected) and manifest["splits"] == expected["splits"], job
        assert manifest["dataset"] == expected["dataset"] == "dom0"
        for key in ("variant", "image_size", "source"):
            assert manifest["generated"][key] == expected["generated"][key], (job, key)
        assert manifest["generated"]["target_domain"] == target  # the export knows indices, not names
        for split, size in SPLIT_SIZES.items():
            ours, theirs = _parsed(out, split), _parsed(generated[job], split)
            assert len(ours) == len(theirs) == size
            for mine, reference in zip(ours, theirs):
                assert set(mine) == set(reference) == set(schema.FIELDS)
                for field in schema.FIELDS:
                    if field != "image":
                        assert mine[field].numpy() == reference[field].numpy(), (job, split, field)
                # The same uint8 generator output through the same encoder: byte-identical JPEGs (so the
                # decoded pixels differ by 0), not merely close.
                assert mine["image"].numpy() == reference["image"].numpy(), (job, split)
                assert schema.decode_image(mine["image"]).shape == (*GEN_SIZE, 3)


def test_style_transfer_job_checks_its_target_domain_and_model_kind(world, tmp_path):
    args = dict(in_dir=world["records"], out_dir=str(tmp_path / "out"))
    with pytest.raises(beam_jobs.errors.ArgumentError, match="--target_domain must be a domain index in \\[0, 2\\)"):
        beam_jobs.run_job("style_transfer", model=world["generator_dir"], target_domain=2, **args)
    with pytest.raises(beam_jobs.errors.ArgumentError, match="style_transfer job only"):
        beam_jobs.run_job("soft_mask", model=world["generator_dir"], target_domain=1, **args)
    with pytest.raises(beam_jobs.errors.DataError, match="is a generator export; this job needs the embedder"):
        beam_jobs.run_job("features", model=world["generator_dir"], **args)
    with pytest.raises(beam_jobs.errors.ArgumentError, match="1 <= min <= max"):
        beam_jobs.run_job("features", model=world["embedder_dir"], min_batch_size=8, max_batch_size=4, **args)
    assert not os.path.exists(args["out_dir"])


def test_a_retried_shard_write_leaves_one_complete_shard_and_the_manifest_comes_last(tmp_path):
    plan = {"query": [{"file": "d-query-00000-of-00002.tfrecord", "num_examples": 3},
                      {"file": "d-query-00001-of-00002.tfrecord", "num_examples": 0}]}
    shard = tmp_path / plan["query"][0]["file"]
    # An earlier attempt killed mid-write leaves its temporary file (a dot name no reader lists).
    crashed = tmp_path / f".{shard.name}.tmp-crashed"
    crashed.write_bytes(b"\x03\x00\x00")
    write = beam_jobs.WriteShard(str(tmp_path), plan)
    element = (("query", 0), [(2, b"c"), (0, b"a"), (1, b"b")])
    first = list(write.process(element))
    retried = list(write.process((element[0], list(reversed(element[1])))))  # the same bundle, run again
    assert first == retried == [{"split": "query", "index": 0, "num_examples": 3}]
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(shard))] == [b"a", b"b", b"c"]  # once, in order
    assert sorted(os.listdir(tmp_path)) == sorted([crashed.name, shard.name])  # no temporary file of ours
    # The manifest checks every count first: a shard short of its input's count stops it.
    with pytest.raises(RuntimeError, match="got 2 records, its input has 3"):
        beam_jobs.write_manifest([{**first[0], "num_examples": 2}], out_dir=str(tmp_path), plan=plan, facts={})
    assert not (tmp_path / shards.MANIFEST_NAME).exists()
    beam_jobs.write_manifest(first, out_dir=str(tmp_path), plan=plan, facts={"dataset": "d"})
    manifest = shards.read_manifest(tmp_path)  # checked against the folder
    assert manifest["splits"]["query"]["num_examples"] == 3
    assert [len(list(tf.data.TFRecordDataset(p))) for p in shards.shard_files(tmp_path, "query")] == [3, 0]


def test_a_failed_shard_write_leaves_no_manifest(world, tmp_path, monkeypatch):
    real = beam_jobs.write_shard

    def fail_second_query_shard(path, records):
        if "query-00001" in os.path.basename(path):
            raise OSError(f"disk full writing {path}")
        return real(path, records)

    monkeypatch.setattr(beam_jobs, "write_shard", fail_second_query_shard)
    out = tmp_path / "features"
    with pytest.raises(Exception, match="disk full"):
        beam_jobs.run_job("features", model=world["embedder_dir"], in_dir=world["records"], out_dir=str(out),
                          splits=["query"])
    assert not (out / shards.MANIFEST_NAME).exists()
    assert all(not name.endswith("query-00001-of-00002.tfrecord") for name in os.listdir(out))


def test_split_pipeline_args_keeps_ours_and_passes_beams_unchanged():
    from bgshift_tf.batch_infer import split_pipeline_args

    argv = ["prog", "--job=features", "--model", "m", "--project=p", "--region", "europe-west1", "--nooverwrite",
            "--save_main_session", "--temp_location=gs://b/tmp", "--flink_master=localhost:8081"]
    ours, beam_args = split_pipeline_args(argv, known={"job", "model", "overwrite"})
    assert ours == ["prog", "--job=features", "--model", "m", "--nooverwrite"]
    assert beam_args == ["--project=p", "--region", "europe-west1", "--save_main_session",
                         "--temp_location=gs://b/tmp", "--flink_master=localhost:8081"]


def test_entry_point_missing_model_is_one_line_naming_it_exit_2(world, tmp_path):
    missing = str(tmp_path / "no_such_export")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "bgshift_tf.batch_infer", "--job=features", f"--model={missing}",
         f"--in_dir={world['records']}", f"--out_dir={tmp_path / 'out'}", "--temp_location=/tmp/beam"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # TensorFlow's C++ start-up lines and Beam's import warning may precede it; the error is one line, the last.
    errors = [line for line in result.stderr.splitlines() if line.startswith("batch_infer: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert errors[0].startswith("batch_infer: error:") and f"--model={missing}" in errors[0], errors[0]
    assert not os.path.exists(tmp_path / "out")


def test_entry_point_runs_a_job_and_logs_each_shard(world, tmp_path):
    out = tmp_path / "features"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "bgshift_tf.batch_infer", "--job=features", f"--model={world['embedder_dir']}",
               f"--in_dir={world['records']}", f"--out_dir={out}", "--splits=query", "--max_batch_size=4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "features query: 2 records in 2 shards" in result.stdout
    written = [line for line in result.stderr.splitlines() if line.startswith("batch_infer: wrote")]
    assert len(written) == 3 and written[-1].endswith("(2 shards)"), result.stderr[-3000:]  # 2 shards + manifest
    assert json.loads((out / shards.MANIFEST_NAME).read_text())["splits"]["query"]["num_examples"] == 2
    with pytest.raises(beam_jobs.errors.UserError, match="already holds a manifest; pass --overwrite"):
        beam_jobs.run_job("features", model=world["embedder_dir"], in_dir=world["records"], out_dir=str(out))
