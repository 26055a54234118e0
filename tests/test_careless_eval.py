"""Evaluation and gallery search fed empty or unscorable inputs (issue 25 item 3, case 1).

An empty query split, an empty gallery split, a query set of distractors only, or one where no query has
a true match left after the junk rule: `evaluate_run` (and `python -m bgshift_tf.evaluate`) ends in a
`UserError` naming the split, the flag and its shards, never a NaN, a ZeroDivisionError or a numpy
traceback, and writes no metrics JSON. The search path (`search build` / `search query`, `evaluate
--index`) the same.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from test_careless_user import run_cases
from test_evaluate import GALLERY, QUERY, _mean_pixel, _write_split

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.data import schema, shards
from bgshift_tf.evaluation.features import FeatureSet
from bgshift_tf.core.rank import NoValidQueryError, evaluate_rank
from bgshift_tf.evaluation.run import evaluate_features, evaluate_run
from bgshift_tf.evaluation.search import GalleryIndex
from bgshift_tf.evaluation.search_eval import evaluate_on_index

# Query pid 4 c1 has only a c1 image of pid 4 in the gallery (junk): no query is valid.
_NO_MATCH_QUERY = [(4, 1, 0.9), (3, 1, -0.5)]
_NO_MATCH_GALLERY = [(4, 1, 0.9), (3, 1, -0.5), (1, 2, 0.0)]
_DISTRACTORS = [(0, 1, 0.3), (-1, 2, 0.3)]

_CASES = {  # name: (query rows, gallery rows, what the message must say)
    "empty_query": ([], GALLERY, "the query split is empty: query_tfrecords="),
    "empty_gallery": (QUERY, [], "the gallery split is empty: gallery_tfrecords="),
    "no_valid_match": (_NO_MATCH_QUERY, _NO_MATCH_GALLERY, "none of the 2 queries has a gallery item"),
    "only_distractors": (_DISTRACTORS, GALLERY, "all 2 queries have pid 0 (distractor) or -1"),
}


def _records(folder, case):
    query, gallery, _ = _CASES[case]
    _write_split(folder, "query", query)
    _write_split(folder, "gallery", gallery)
    return str(folder)


def _one_line(message):
    return "\n" not in " ".join(message.split()) and message.strip()


@pytest.mark.parametrize("case", sorted(_CASES))
def test_evaluate_run_refuses_an_empty_or_unscorable_split_naming_it(tmp_path, case):
    records = _records(tmp_path / "records", case)
    out = tmp_path / "eval" / "metrics.json"
    with pytest.raises(errors.DataError) as caught:
        evaluate_run(query_tfrecords=records, gallery_tfrecords=records, embed_fn=_mean_pixel, image_size=(32, 16),
                     out_path=str(out), progress=False)
    message = str(caught.value)
    assert _CASES[case][2] in message and records in message, message
    if case.startswith("empty"):
        assert "holding 0 records" in message and "-00000-of-00002.tfrecord" in message
    else:
        assert "nothing to score: query_tfrecords=" in message
    assert not out.parent.exists(), "a failed evaluation wrote something"


def test_empty_feature_sets_raise_no_valid_query_not_nan():
    empty = FeatureSet(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([]))
    some = FeatureSet(np.ones((2, 3), np.float32), np.array([1, 2]), np.array([1, 2]), np.array(["a", "b"]))
    for query, gallery in ((empty, some), (some, empty)):
        with pytest.raises(NoValidQueryError, match="No valid query"):
            evaluate_features(query, gallery)
    with pytest.raises(NoValidQueryError, match="none of the 0 queries"):
        evaluate_rank(np.zeros((0, 2)), [], [1, 2], [], [1, 2])
    assert issubclass(NoValidQueryError, ValueError)


def test_index_evaluation_of_unscorable_queries_names_them(tmp_path):
    records = _records(tmp_path / "records", "no_valid_match")
    levels = np.array([0.9, -0.5, 0.0], np.float32)  # the mean-pixel embedding below, plus a constant 1
    gallery = FeatureSet(np.stack([levels, levels, levels, np.ones(3, np.float32)], axis=1), np.array([4, 3, 1]),
                         np.array([1, 1, 2]), np.array(["a", "b", "c"]))
    index = GalleryIndex.build(*gallery, distance="euclidean")
    query = FeatureSet(gallery.features[:2], gallery.pids[:2], gallery.camids[:2], gallery.filenames[:2])
    with pytest.raises(NoValidQueryError, match="none of the 2 queries"):
        evaluate_on_index(query, index)
    with pytest.raises(NoValidQueryError, match="all 1 queries have pid 0"):
        evaluate_on_index(FeatureSet(query.features[:1], np.array([0]), query.camids[:1], query.filenames[:1]), index)
    embed = lambda batch: np.concatenate([_mean_pixel(batch).numpy(), np.ones((len(batch["pid"]), 1))], axis=1)
    with pytest.raises(errors.DataError, match="nothing to score: query_tfrecords=.*gallery index of 3"):
        evaluate_run(query_tfrecords=records, gallery_index=index, embed_fn=embed, image_size=(32, 16),
                     progress=False)
    empty = _records(tmp_path / "empty", "empty_query")
    with pytest.raises(errors.DataError, match="the query split is empty"):
        evaluate_run(query_tfrecords=empty, gallery_index=index, embed_fn=embed, image_size=(32, 16), progress=False)


_INJECT_EMBEDDING = """
import functools
import tensorflow as tf
module.evaluate_run = functools.partial(
    module.evaluate_run, embed_fn=lambda batch: tf.reduce_mean(batch["image"], axis=[1, 2]), image_size=(32, 16))
"""


def _snapshot(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, dirs, files in os.walk(root) for name in dirs + files)


def test_evaluate_entry_point_ends_an_empty_or_unscorable_split_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    argvs, expected = [], []
    for case in sorted(_CASES):
        records = _records(tmp_path / case, case)
        argvs.append([f"--run_dir={run_dir}", f"--query_tfrecords={records}", f"--gallery_tfrecords={records}",
                      f"--out={tmp_path / case / 'out' / 'metrics.json'}"])
        expected.append(_CASES[case][2])
    before = _snapshot(tmp_path)
    results = run_cases("evaluate", argvs, prelude=_INJECT_EMBEDDING)
    for case, named, result in zip(sorted(_CASES), expected, results):
        errors_shown = [line for line in result["stderr"].splitlines() if "error" in line.lower()]
        assert result["code"] == 2 and "Traceback" not in result["stderr"], (case, result)
        assert len(errors_shown) == 1 and errors_shown[0].startswith("evaluate: error:"), (case, result)
        assert named in errors_shown[0], (case, errors_shown)  # (progress bars of the query features may precede)
    assert _snapshot(tmp_path) == before, "a failed evaluation wrote something"


def _feature_folder(folder, parts):
    """A feature shard folder (as `batch_infer features` writes) with `parts` {split: (features, pids, cams)}."""
    os.makedirs(folder, exist_ok=True)
    splits = {}
    for split, (features, pids, cameras) in parts.items():
        name = shards.shard_name("toy", split, 0, 1)
        with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
            for i, (feature, pid, camera) in enumerate(zip(features, pids, cameras)):
                writer.write(schema.serialize_feature_example(
                    {"pid": pid, "camera": camera, "filename": f"{split}_{i}.jpg", "split": split,
                     "domain_name": "toy"}, np.asarray(feature, np.float32)))
        splits[split] = {"num_shards": 1, "num_examples": len(pids),
                         "shards": [{"file": name, "num_examples": len(pids), "complete": True}]}
    atomic_io.write_json(os.path.join(folder, "manifest.json"), {
        "schema_version": schema.SCHEMA_VERSION, "dataset": "toy", "content": "features", "feature_dim": 4,
        "model": {"name": "toy", "version": 1}, "splits": splits})
    return str(folder)


def test_search_entry_point_ends_empty_splits_in_one_line(tmp_path):
    rng = np.random.default_rng(0)
    some = (rng.normal(size=(6, 4)), [1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 2])
    none = (np.zeros((0, 4)), [], [])
    full = _feature_folder(tmp_path / "full", {"query": some, "gallery": some})
    hollow = _feature_folder(tmp_path / "hollow", {"query": none, "gallery": none})
    index = tmp_path / "index"
    cases = [
        (["build", f"--features={hollow}", f"--out={tmp_path / 'no_index'}"], 2, "split 'gallery'"),
        (["build", f"--features={full}", f"--out={index}"], 0, None),
        (["query", f"--features={hollow}", f"--index={index}", f"--out={tmp_path / 'top.json'}"], 2, "split 'query'"),
    ]
    results = run_cases("search", [argv for argv, _, _ in cases])
    for (argv, code, named), result in zip(cases, results):
        assert (result["code"] or 0) == code, (argv, result)  # absl exits with None on success
        if named:
            lines = result["stderr"].strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("search: error:"), (argv, lines)
            assert named in lines[0] and hollow in lines[0] and "holds no record" in lines[0], lines
    assert not (tmp_path / "no_index").exists() and not (tmp_path / "top.json").exists()
