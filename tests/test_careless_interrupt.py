"""SIGINT / SIGTERM / SIGKILL while `build_tfrecords` writes shards (issue 25 item 3, case 2).

The child process runs the real entry point with `schema.serialize_example` wrapped to send the signal to
itself at its n-th call, i.e. in the middle of a shard: deterministic, no sleeps. After the signal no
shard is half-written under its final name, no temporary file is left (Ctrl-C, SIGTERM), the manifest
marks complete only shards that are on disk whole (readers refuse the folder until it is), and the same
command run again completes with the shards of an uninterrupted build. After SIGKILL (no cleanup
possible) the next run removes the dead writer's temporary file.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import data_fixtures

from bgshift_tf.data import shards
from bgshift_tf.data.build import build_dataset_tfrecords

_CHILD = """
import os, signal, sys
# A shell starting a job in the background (`make test &`, nohup) leaves SIGINT ignored in its children, and
# Python then installs no KeyboardInterrupt handler: give the child the handler an interactive run has.
signal.signal(signal.SIGINT, signal.default_int_handler)
from bgshift_tf.data import schema
signum, at = int(sys.argv[1]), int(sys.argv[2])
original, calls = schema.serialize_example, [0]
def serialize(example):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signum)
    return original(example)
if signum:
    schema.serialize_example = serialize
sys.argv = ["build_tfrecords", *sys.argv[3:]]
from bgshift_tf import build_tfrecords
from bgshift_tf.core import errors
errors.run(build_tfrecords.main, "build_tfrecords")
"""


def _build(argv, signum=0, at=0):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), str(signum), str(at), *argv],
                          capture_output=True, text=True, timeout=300, env=env)


def _shard_records(folder):
    """{shard name: [tf.train.Example per record]}: compared by content (a feature map's byte order varies)."""
    import tensorflow as tf

    return {name: [tf.train.Example.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(str(folder / name))]
            for name in sorted(os.listdir(folder)) if name.endswith(".tfrecord")}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    data = data_fixtures.make_layout(str(root / "data"), data_fixtures.MARKET_NAMES)
    reference = root / "reference"
    build_dataset_tfrecords("market1501", data, str(reference), num_shards=4, progress=False)
    return data, reference


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_mid_shard_leaves_no_half_shard_and_the_rerun_completes(tmp_path, layout, signum):
    data, reference = layout
    out = tmp_path / "out"
    argv = ["--dataset=market1501", f"--data_dir={data}", f"--out_dir={out}", "--num_shards=4"]
    stopped = _build(argv, int(signum), at=3)  # the 3rd example: the third shard of the first split
    assert stopped.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum), stopped.stderr
    temporaries = [name for name in os.listdir(out) if ".tmp-" in name]
    if signum == signal.SIGKILL:
        assert temporaries, "SIGKILL cannot clean up: the test expects the dead writer's temporary file"
    else:
        assert "Traceback" not in stopped.stderr, stopped.stderr
        assert stopped.stderr.strip().splitlines()[-1].startswith("build_tfrecords: interrupted"), stopped.stderr
        assert not temporaries, temporaries
    manifest = shards.read_manifest(out)  # consistent with its folder
    on_disk = {name for name in os.listdir(out) if name.endswith(".tfrecord")}
    listed_complete = set()
    for split, entry in manifest["splits"].items():
        for shard in entry["shards"]:
            if shard["complete"]:
                listed_complete.add(shard["file"])
                assert shard["file"] in on_disk
                assert shards.verify_shards([str(out / shard["file"])])["num_records"] == shard["num_examples"]
        if not all(shard["complete"] for shard in entry["shards"]):
            with pytest.raises(shards.ManifestError, match="incomplete or missing"):
                shards.shard_files(out, split)
    assert on_disk == listed_complete, "a shard file under its final name that the manifest does not vouch for"
    assert len(listed_complete) == 2

    rerun = _build(argv)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not [name for name in os.listdir(out) if ".tmp-" in name]
    for split in manifest["splits"]:
        assert shards.shard_files(out, split)
    assert _shard_records(out) == _shard_records(reference)
