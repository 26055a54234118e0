import json
import os

import pytest
import tensorflow as tf

from bgshift_tf.data import schema, shards


def _example(i):
    return {
        "image": f"jpeg-{i}".encode(),
        "mask": b"",
        "has_mask": 0,
        "pid": i,
        "label": i,
        "camera": 1,
        "domain": 0,
        "domain_name": "toy",
        "split": "train",
        "filename": f"{i}.jpg",
        "height": 2,
        "width": 1,
    }


def _pids(path):
    return [int(schema.parse_example(r)["pid"]) for r in tf.data.TFRecordDataset(path)]


def test_write_shards_names_sizes_contents_and_manifest(tmp_path):
    out = str(tmp_path / "out")
    paths = shards.write_shards([_example(i) for i in range(10)], out, "toy", "train", 3)
    assert [os.path.basename(p) for p in paths] == [f"toy-train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [_pids(p) for p in paths] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    manifest = shards.read_manifest(out)
    assert manifest["schema_version"] == schema.SCHEMA_VERSION and manifest["dataset"] == "toy"
    assert [s["num_examples"] for s in manifest["splits"]["train"]["shards"]] == [3, 3, 4]
    assert all(s["complete"] for s in manifest["splits"]["train"]["shards"])
    assert shards.shard_files(out, "train") == paths
    assert sorted(os.listdir(out)) == sorted([os.path.basename(p) for p in paths] + ["manifest.json"])
    with pytest.raises(ValueError, match="no split 'query'"):
        shards.shard_files(out, "query")


class _Exploding:
    """A lazy example sequence whose item `bad` raises, and which records what was read."""

    def __init__(self, n, bad=None):
        self.n, self.bad, self.read = n, bad, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise RuntimeError("disk on fire")
        self.read.append(i)
        return _example(i)


def test_failed_shard_leaves_no_partial_file_and_rerun_resumes(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="disk on fire"):
        shards.write_shards(_Exploding(9, bad=4), out, "toy", "train", 3)
    assert sorted(os.listdir(out)) == ["manifest.json", "toy-train-00000-of-00003.tfrecord"]
    entries = shards.read_manifest(out)["splits"]["train"]["shards"]
    assert [s["complete"] for s in entries] == [True, False, False]
    with pytest.raises(ValueError, match="00001-of-00003.*incomplete"):
        shards.shard_files(out, "train")
    examples = _Exploding(9)
    shards.write_shards(examples, out, "toy", "train", 3)
    assert examples.read == list(range(3, 9))  # the finished shard was not read again
    assert [len(_pids(p)) for p in shards.shard_files(out, "train")] == [3, 3, 3]
    again = _Exploding(9)
    shards.write_shards(again, out, "toy", "train", 3)
    assert again.read == []
    shards.write_shards(again, out, "toy", "train", 3, overwrite=True)
    assert again.read == list(range(9))


def test_changed_shard_count_or_size_is_rewritten(tmp_path):
    out = str(tmp_path / "out")
    shards.write_shards([_example(i) for i in range(6)], out, "toy", "train", 2)
    bigger = _Exploding(8)
    shards.write_shards(bigger, out, "toy", "train", 2)
    assert bigger.read == list(range(8))
    assert [_pids(p) for p in shards.shard_files(out, "train")] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_manifest_schema_mismatch_and_absence(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        shards.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 0, "splits": {}}))
    with pytest.raises(ValueError, match="schema_version=0"):
        shards.read_manifest(str(tmp_path))


def _corrupt(path, mode):
    data = open(path, "rb").read()
    if mode == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("mode", ["truncate", "garble"])
def test_corrupt_shard_is_named_or_skipped_and_counted(tmp_path, mode):
    out = str(tmp_path / "out")
    paths = shards.write_shards([_example(i) for i in range(12)], out, "toy", "train", 2)
    _corrupt(paths[1], mode)
    with pytest.raises(shards.CorruptShardError, match="toy-train-00001-of-00002.tfrecord"):
        shards.verify_shards(paths)
    report = shards.verify_shards(paths, skip_corrupt=True)
    readable = len(list(tf.data.TFRecordDataset(paths[1]).ignore_errors()))
    assert readable < 6
    assert report["num_records"] == 6 + readable
    assert report["num_skipped"] == 6 - readable
    assert list(report["corrupt_shards"]) == [paths[1]]


def _edit_manifest(out, edit):
    path = os.path.join(out, "manifest.json")
    manifest = json.load(open(path))
    edit(manifest["splits"]["train"])
    open(path, "w").write(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda train: train["shards"].pop(), "lists 1 shards but num_shards=2"),
        (lambda train: train.update(num_shards=1, shards=train["shards"][:1], num_examples=6),
         "toy-train-00001-of-00002.tfrecord' is on disk but not in the manifest"),
        (lambda train: train["shards"][0].update(num_examples=2), "add up to 8 but num_examples=12"),
    ],
)
def test_inconsistent_manifest_is_refused_naming_the_folder(tmp_path, edit, problem):
    out = str(tmp_path / "out")
    shards.write_shards([_example(i) for i in range(12)], out, "toy", "train", 2)
    _edit_manifest(out, edit)
    with pytest.raises(shards.ManifestError, match=f"{out}.*{problem}"):
        shards.shard_files(out, "train")


def test_invalid_manifest_json_names_the_path_and_overwrite_rebuilds(tmp_path):
    out = str(tmp_path / "out")
    shards.write_shards([_example(i) for i in range(4)], out, "toy", "train", 2)
    open(os.path.join(out, "manifest.json"), "w").write('{"schema_version": 1, "spl')
    with pytest.raises(shards.ManifestError, match="manifest.json' is not valid JSON.*--overwrite"):
        shards.shard_files(out, "train")
    with pytest.raises(shards.ManifestError, match="not valid JSON"):
        shards.write_shards([_example(i) for i in range(4)], out, "toy", "train", 2)
    paths = shards.write_shards([_example(i) for i in range(4)], out, "toy", "train", 2, overwrite=True)
    assert shards.shard_files(out, "train") == paths and [_pids(p) for p in paths] == [[0, 1], [2, 3]]


def test_naming_corrupt_shards_turns_a_bare_data_loss_into_the_shard_name(tmp_path):
    out = str(tmp_path / "out")
    paths = shards.write_shards([_example(i) for i in range(12)], out, "toy", "train", 2)
    _corrupt(paths[1], "garble")
    with pytest.raises(tf.errors.DataLossError) as bare:
        list(tf.data.TFRecordDataset(paths))
    assert "toy-train" not in bare.value.message
    with pytest.raises(shards.CorruptShardError, match="toy-train-00001-of-00002.tfrecord"):
        with shards.naming_corrupt_shards(paths):
            list(tf.data.TFRecordDataset(paths))
