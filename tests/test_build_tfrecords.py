import os
import subprocess
import sys

import pytest
import tensorflow as tf

from data_fixtures import MARKET_NAMES, make_cuhk03_mat, make_cuhk03_np, make_layout

from bgshift_tf.core import errors
from bgshift_tf.data import schema, shards
from bgshift_tf.data.build import build_dataset_tfrecords
from bgshift_tf.data.masks import MaskError


def _records(out_dir, split):
    return [schema.parse_example(r) for f in shards.shard_files(out_dir, split) for r in tf.data.TFRecordDataset(f)]


def test_market_build_end_to_end(tmp_path):
    root = make_layout(str(tmp_path / "synmarket"), MARKET_NAMES, mask_dir=str(tmp_path / "synmarket" / "masks"))
    out = str(tmp_path / "tf")
    manifest = build_dataset_tfrecords(
        "market1501", root, out, mask_dir=os.path.join(root, "masks"), num_shards=3,
        domain_index=1, domain_name="synmarket", progress=False,
    )
    assert {s: e["num_examples"] for s, e in manifest["splits"].items()} == {"train": 4, "query": 2, "gallery": 3}
    assert manifest["splits"]["train"]["ids"] == [2, 5, 7] and manifest["num_train_ids"] == 3
    assert manifest["splits"]["gallery"]["ids"] == [0, 10, 11]
    assert manifest["splits"]["train"]["cameras"] == [1, 2, 3]
    assert manifest["splits"]["query"]["num_shards"] == 2  # capped by the split size
    assert manifest["skipped"]["junk"] == 1 and manifest["domain_name"] == "synmarket"
    assert manifest["build_args"]["num_shards"] == 3 and manifest["build_args"]["dataset"] == "market1501"
    assert os.path.basename(shards.shard_files(out, "train")[0]) == "synmarket-train-00000-of-00003.tfrecord"
    train = _records(out, "train")
    by_name = {r["filename"].numpy().decode(): r for r in train}
    assert sorted(by_name) == sorted(MARKET_NAMES["train"])
    for name, r in by_name.items():
        with open(os.path.join(root, "bounding_box_train", name), "rb") as f:
            assert r["image"].numpy() == f.read()  # JPEG bytes as on disk
        assert r["has_mask"].numpy() == 1 and r["domain"].numpy() == 1
        assert (r["height"].numpy(), r["width"].numpy()) == (32, 16)
        assert r["domain_name"].numpy() == b"synmarket" and r["split"].numpy() == b"train"
    assert {(int(r["pid"]), int(r["label"])) for r in train} == {(2, 0), (5, 1), (7, 2)}
    assert all(int(r["label"]) == -1 for r in _records(out, "gallery"))


def test_build_resumes_and_bad_masks(tmp_path):
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES, mask_dir=str(tmp_path / "masks"))
    os.remove(os.path.join(str(tmp_path / "masks"), "bounding_box_train", "0007_c3s1_000101_02.png"))
    out = str(tmp_path / "tf")
    with pytest.raises(MaskError, match="0007_c3s1_000101_02.png.*--skip_bad_masks"):
        build_dataset_tfrecords("market1501", root, out, mask_dir=str(tmp_path / "masks"), progress=False)
    manifest = build_dataset_tfrecords(
        "market1501", root, out, mask_dir=str(tmp_path / "masks"), skip_bad_masks=True, num_shards=2, progress=False
    )
    assert manifest["skipped"]["train_bad_mask"] == 1
    assert manifest["splits"]["train"]["num_examples"] == 3
    assert {(int(r["pid"]), int(r["label"])) for r in _records(out, "train")} == {(2, 0), (5, 1)}  # relabelled
    first = shards.shard_files(out, "train")[0]
    stamp = os.stat(first).st_mtime_ns
    again = {"mask_dir": str(tmp_path / "masks"), "skip_bad_masks": True, "num_shards": 2, "progress": False}
    build_dataset_tfrecords("market1501", root, out, **again)
    assert os.stat(first).st_mtime_ns == stamp
    build_dataset_tfrecords("market1501", root, out, overwrite=True, **again)
    assert os.stat(first).st_mtime_ns != stamp


def test_cuhk03_np_png_sources_are_reencoded_and_classic_build(tmp_path):
    make_cuhk03_np(str(tmp_path / "np"))
    out = str(tmp_path / "np_tf")
    build_dataset_tfrecords("cuhk03_np", str(tmp_path / "np"), out, num_shards=1, progress=False)
    record = _records(out, "query")[0]
    assert record["image"].numpy()[:2] == b"\xff\xd8"  # PNG source stored as JPEG
    assert tuple(schema.decode_image(record["image"]).shape) == (40, 20, 3)
    mat_path = str(tmp_path / "cuhk-03.mat")
    make_cuhk03_mat(mat_path)
    out = str(tmp_path / "classic_tf")
    manifest = build_dataset_tfrecords("cuhk03_classic", mat_path, out, cuhk03_split=4, domain_index=2, progress=False)
    assert manifest["splits"]["query"]["ids"] == manifest["splits"]["gallery"]["ids"]
    assert len(manifest["splits"]["query"]["ids"]) == 2 and manifest["num_train_ids"] == 9
    assert manifest["skipped"]["empty_cell"] == 1
    assert manifest["splits"]["query"]["cameras"] == [9, 10]  # split 4 tests pair 5
    images = [schema.decode_image(r["image"]).numpy() for r in _records(out, "gallery")]
    assert all(image.shape[1] == 15 for image in images)  # pair 5 images are 10 + 5 wide
    with pytest.raises(ValueError, match="'viper'"):
        build_dataset_tfrecords("viper", mat_path, out, progress=False)


def test_entry_point_flags_drive_the_build(tmp_path, capsys):
    """The absl entry point in-process (no subprocess: TF import alone costs ~15 s under load)."""
    from absl import flags

    from bgshift_tf import build_tfrecords

    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    out = str(tmp_path / "tf")
    argv = ["build_tfrecords", "--dataset=market1501", f"--data_dir={root}", f"--out_dir={out}", "--num_shards=2",
            "--domain_name=synmarket", "--domain_index=2"]
    try:
        build_tfrecords.main(flags.FLAGS(argv))
    finally:
        flags.FLAGS.unparse_flags()
    assert "'train': 4" in capsys.readouterr().out
    assert len(shards.shard_files(out, "train")) == 2
    manifest = shards.read_manifest(out)
    assert manifest["domain"] == 2 and manifest["build_args"]["domain_name"] == "synmarket"


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    _truncate(os.path.join(root, "query", "0011_c2s1_001151_00.jpg"))  # the header still opens
    out = str(tmp_path / "tf")
    with pytest.raises(errors.DataError, match="0011_c2s1_001151_00.jpg' cannot be decoded: Truncated"):
        build_dataset_tfrecords("market1501", root, out, num_shards=2, progress=False)
    with pytest.raises(shards.ManifestError, match="incomplete or missing"):
        shards.shard_files(out, "query")  # nothing marked complete for the bad split


def test_empty_split_and_bad_shard_count_are_errors(tmp_path):
    root = make_layout(str(tmp_path / "m"), {**MARKET_NAMES, "query": []})
    os.makedirs(os.path.join(root, "query"), exist_ok=True)
    out = str(tmp_path / "tf")
    with pytest.raises(errors.DataError, match=f"split 'query' of '{root}' has no images"):
        build_dataset_tfrecords("market1501", root, out, num_shards=2, progress=False)
    assert not [name for name in os.listdir(out) if name.startswith("market1501-query")]  # no 0-byte shard
    for bad in (0, -3):
        with pytest.raises(errors.ArgumentError, match=f"--num_shards.*Received: num_shards={bad}"):
            build_dataset_tfrecords("market1501", root, out, num_shards=bad, progress=False)


def test_overwrite_rebuilds_a_folder_whose_manifest_is_not_json(tmp_path):
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    out = str(tmp_path / "tf")
    build_dataset_tfrecords("market1501", root, out, num_shards=2, progress=False)
    open(os.path.join(out, "manifest.json"), "w").write("{broken")
    with pytest.raises(shards.ManifestError, match="manifest.json' is not valid JSON"):
        build_dataset_tfrecords("market1501", root, out, num_shards=2, progress=False)
    manifest = build_dataset_tfrecords("market1501", root, out, num_shards=2, overwrite=True, progress=False)
    assert {s: e["num_examples"] for s, e in manifest["splits"].items()} == {"train": 4, "query": 2, "gallery": 3}
    assert manifest["build_args"]["dataset"] == "market1501" and len(shards.shard_files(out, "gallery")) == 2


def test_entry_point_user_error_is_one_line_with_exit_status_2(tmp_path):
    """Subprocess on purpose: the exit status and stderr of the real command are what is tested."""
    root = make_layout(str(tmp_path / "m"), MARKET_NAMES)
    _truncate(os.path.join(root, "bounding_box_train", "0005_c1s2_000021_01.jpg"))
    command = [sys.executable, "-m", "bgshift_tf.build_tfrecords", "--dataset=market1501", f"--data_dir={root}",
               f"--out_dir={tmp_path / 'tf'}", "--num_shards=1"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("build_tfrecords:")]
    assert len(lines) == 1 and "0005_c1s2_000021_01.jpg' cannot be decoded" in lines[0]
    assert "Traceback" not in result.stderr
    verbose = subprocess.run(command + ["--verbose"], capture_output=True, text=True, timeout=300, env=env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "DataError" in verbose.stderr


def test_entry_point_builds_all_cuhk03_splits_and_rejects_a_bad_split(tmp_path, capsys):
    from absl import flags

    from bgshift_tf import build_tfrecords

    mat_path = str(tmp_path / "cuhk-03.mat")
    make_cuhk03_mat(mat_path)
    out = str(tmp_path / "tf")
    argv = ["build_tfrecords", "--dataset=cuhk03_classic", f"--data_dir={mat_path}", f"--out_dir={out}",
            "--num_shards=1", "--cuhk03_split=all"]
    try:
        build_tfrecords.main(flags.FLAGS(argv))
        printed = capsys.readouterr().out
        assert printed.count("wrote ") == 20 and os.path.join(out, "split_19") in printed
        assert shards.read_manifest(os.path.join(out, "split_07"))["build_args"]["cuhk03_split"] == 7
        flags.FLAGS.unparse_flags()
        with pytest.raises(errors.ArgumentError, match="--cuhk03_split must be an integer 0..19 or `all`. "
                                                       "Received: 'every'"):
            build_tfrecords.main(flags.FLAGS(argv[:-1] + ["--cuhk03_split=every"]))
    finally:
        flags.FLAGS.unparse_flags()
