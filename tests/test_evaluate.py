"""End-to-end tests of evaluate_run (TFRecords -> features -> metrics JSON) with injected embeddings."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_fixtures import make_cuhk03_mat

from bgshift_tf.data import schema, shards
from bgshift_tf.data.build import build_dataset_tfrecords
from bgshift_tf.data.records import encode_jpeg
from bgshift_tf.evaluation.features import FeatureSet
from bgshift_tf.evaluation.feature_cache import checkpoint_identity, resolve_tfrecords
from bgshift_tf.evaluation.run import (
    CUHK03_SUMMARY_METRICS, evaluate_cuhk03_classic, evaluate_features, evaluate_run, format_table,
)

# Flat grey images; the injected embedding is the mean pixel, so distances are grey-level differences.
#   query  pid 1 c1 at 0.0 -> gallery pid 1 (c2, c3) at 0.0: ranks 1, 2 -> AP 1, mINP 1
#   query  pid 2 c1 at 0.5 -> gallery pid 2 (c2) at 0.5: rank 1 -> AP 1, mINP 1
#   query  pid 3 c1 at -0.5 -> pid 3 c1 at -0.5 is junk; pid 3 c2 at 0.05 (distance 0.55) comes after
#          both pid 1 images (0.5): rank 3 -> AP 1/3, mINP 1/3
#   query  pid 4 c1 at 0.9 -> its only gallery image is c1 (junk): invalid
# => 3 valid queries of 4; rank-1 = 2/3, rank-5 = 1; mAP = mINP = (1 + 1 + 1/3) / 3 = 7/9.
QUERY = [(1, 1, 0.0), (2, 1, 0.5), (3, 1, -0.5), (4, 1, 0.9)]
GALLERY = [(1, 2, 0.0), (2, 2, 0.5), (3, 1, -0.5), (1, 3, 0.0), (3, 2, 0.05), (4, 1, 0.9)]


def _write_split(out_dir, split, rows, offset=0.0, overwrite=False):
    examples = []
    for index, (pid, camera, level) in enumerate(rows):
        value = int(round((level + offset + 1) * 127.5))
        examples.append(
            dict(
                image=encode_jpeg(np.full((32, 16, 3), value, np.uint8)), mask=b"", has_mask=0, pid=pid,
                label=-1, camera=camera, domain=0, domain_name="toy", split=split,
                filename=f"{pid:04d}_c{camera}_{index:02d}.jpg", height=32, width=16,
            )
        )
    return shards.write_shards(examples, out_dir, "toy", split, num_shards=2, overwrite=overwrite)


@pytest.fixture
def toy_records(tmp_path):
    folder = tmp_path / "records"
    _write_split(folder, "query", QUERY)
    _write_split(folder, "gallery", GALLERY)
    return str(folder)


def _mean_pixel(batch):
    return tf.reduce_mean(batch["image"], axis=[1, 2])


def test_evaluate_run_writes_expected_metrics_json(toy_records, tmp_path, capsys):
    out = tmp_path / "eval" / "metrics.json"
    metrics = evaluate_run(
        str(tmp_path / "run"), query_tfrecords=toy_records, gallery_tfrecords=toy_records,
        embed_fn=_mean_pixel, image_size=(32, 16), batch_size=3, out_path=str(out),
    )
    written = json.loads(out.read_text())
    assert written == metrics
    assert written["num_valid_queries"] == 3 and written["num_queries"] == 4 and written["num_gallery"] == 6
    assert written["rank1"] == pytest.approx(2 / 3) and written["rank5"] == 1.0
    assert written["mAP"] == pytest.approx(7 / 9) and written["mINP"] == pytest.approx(7 / 9)
    assert len(written["cmc"]) == 50 and written["feature_dim"] == 3
    assert written["convention"].startswith("standard") and written["distance"] == "euclidean"
    assert [os.path.basename(f) for f in written["query_tfrecords"]] == [
        "toy-query-00000-of-00002.tfrecord", "toy-query-00001-of-00002.tfrecord"
    ]
    printed = capsys.readouterr().out
    assert "rank-1" in printed and "66.67" in printed and "77.78" in printed and "3/4" in printed
    # Per-query results of the 3 valid queries (pids 1, 2, 3: APs 1, 1, 1/3) beside the JSON, and the
    # the bootstrap over those 3 identities, whose interval holds the measured rank-1 and mAP.
    with np.load(out.parent / "per_query_metrics.npz") as per_query:
        np.testing.assert_array_equal(per_query["pid"], [1, 2, 3])
        np.testing.assert_array_equal(per_query["first_match_rank"], [1, 1, 3])
        np.testing.assert_allclose(per_query["ap"], [1, 1, 1 / 3])
    ci = written["bootstrap_ci"]
    assert ci["unit"] == "query identity" and ci["num_identities"] == 3 and ci["confidence"] == 0.95
    assert 0 <= ci["R-1"][0] <= 2 / 3 <= ci["R-1"][1] <= 1 and ci["mAP"][0] <= 7 / 9 <= ci["mAP"][1]
    assert "bootstrap CI over 3 query identities" in printed
    assert not [name for name in os.listdir(out.parent) if ".tmp" in name]


def test_evaluate_run_soft_mask_pairs_and_reranks(toy_records, tmp_path):
    # Soft-mask images = the originals darkened by 0.2 (same files, same order). The two-stream
    # embedding concatenates (soft-mask mean + 0.2, original mean): both halves equal the plain feature,
    # so the metrics equal the plain run's only if the streams are paired image by image.
    soft = tmp_path / "soft"
    _write_split(soft, "query", QUERY, offset=-0.2)
    _write_split(soft, "gallery", GALLERY, offset=-0.2)

    def two_stream(batch):
        return tf.concat([tf.reduce_mean(batch["soft_mask_image"], axis=[1, 2]) + 0.2, _mean_pixel(batch)], 1)

    metrics = evaluate_run(
        query_tfrecords=toy_records, gallery_tfrecords=toy_records, soft_mask_query_tfrecords=str(soft),
        soft_mask_gallery_tfrecords=str(soft), embed_fn=two_stream, image_size=(32, 16), batch_size=4,
        progress=False, max_rank=5,
    )
    assert metrics["mAP"] == pytest.approx(7 / 9) and metrics["num_valid_queries"] == 3
    assert metrics["feature_dim"] == 6
    assert sorted(k for k in metrics if k.startswith("rank")) == ["rank1", "rank5"]
    reranked = evaluate_run(
        query_tfrecords=toy_records, gallery_tfrecords=toy_records, embed_fn=_mean_pixel, image_size=(32, 16),
        rerank=True, mode="market_official", progress=False,
    )
    assert reranked["rerank"] and reranked["convention"].startswith("market_official")
    assert reranked["num_valid_queries"] == 3 and reranked["cmc"][-1] == 0.75  # CMC over all 4 queries


def test_features_cache_is_reused(toy_records, tmp_path):
    calls = []

    def counting(batch):
        calls.append(1)
        return _mean_pixel(batch)

    kwargs = dict(query_tfrecords=toy_records, gallery_tfrecords=toy_records, image_size=(32, 16),
                  batch_size=8, progress=False, features_cache_dir=str(tmp_path / "cache"))
    first = evaluate_run(embed_fn=counting, **kwargs)
    assert len(calls) == 2  # one batch each for query and gallery
    second = evaluate_run(embed_fn=counting, **kwargs)
    assert len(calls) == 2 and second["mAP"] == first["mAP"]
    evaluate_run(embed_fn=counting, flip_average=True, **kwargs)  # other settings: extracted again
    assert len(calls) == 6


def test_features_cache_is_keyed_on_content_not_paths(toy_records, tmp_path):
    # Rebuilding the same folder in place (same shard names) must not serve the old features.
    calls = []

    def counting(batch):
        calls.append(1)
        return _mean_pixel(batch)

    kwargs = dict(query_tfrecords=toy_records, gallery_tfrecords=toy_records, embed_fn=counting,
                  image_size=(32, 16), batch_size=8, progress=False, features_cache_dir=str(tmp_path / "cache"))
    first = evaluate_run(**kwargs)
    assert first["num_gallery"] == 6 and len(calls) == 2
    assert evaluate_run(**kwargs)["mAP"] == first["mAP"] and len(calls) == 2  # unchanged folder: cache hit
    # pid 3's c2 image now sits at pid 1's level: query 3 drops from rank 3 to rank 1 among 5 images.
    _write_split(toy_records, "gallery", [row if row[:2] != (3, 2) else (3, 2, -0.5) for row in GALLERY[:5]],
                 overwrite=True)
    rebuilt = evaluate_run(**kwargs)
    assert len(calls) == 3  # the query split is unchanged: only the gallery is extracted again
    assert rebuilt["num_gallery"] == 5 and rebuilt["mAP"] > first["mAP"]


def test_checkpoint_identity_follows_the_checkpoint_files(tmp_path):
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1))
    prefix = checkpoint.write(str(tmp_path / "ckpt"))
    before = checkpoint_identity(prefix)
    assert before[0] == prefix and len(before) > 1 and checkpoint_identity(None) is None
    checkpoint.step.assign(2)
    os.utime(checkpoint.write(prefix) + ".index", ns=(1, 1))
    assert checkpoint_identity(prefix) != before


def test_distractor_queries_are_skipped_when_query_is_gallery(tmp_path, caplog):
    # Query = gallery files; two pid-0 distractors from two cameras would match each other as a query.
    folder = tmp_path / "records"
    gallery = _write_split(folder, "gallery", [*GALLERY, (0, 1, 0.3), (0, 2, 0.3), (-1, 3, 0.3)])
    metrics = evaluate_run(query_tfrecords=",".join(gallery), gallery_tfrecords=str(folder), embed_fn=_mean_pixel,
                           image_size=(32, 16), progress=False)
    assert metrics["num_skipped_distractor_queries"] == 3
    assert metrics["num_queries"] == len(GALLERY)
    assert "skipping 3 of 9 queries" in caplog.text


def test_bad_arguments_raise(toy_records, tmp_path):
    with pytest.raises(ValueError, match="needs `run_dir`, `model` or `embed_fn`"):
        evaluate_run(query_tfrecords=toy_records, gallery_tfrecords=toy_records)
    with pytest.raises(ValueError, match="`image_size`"):
        evaluate_run(query_tfrecords=toy_records, gallery_tfrecords=toy_records, embed_fn=_mean_pixel)
    with pytest.raises(ValueError, match="`query_tfrecords`: no TFRecord file at"):
        resolve_tfrecords(str(tmp_path / "missing-*.tfrecord"), "query", "query_tfrecords")
    files = resolve_tfrecords(os.path.join(toy_records, "toy-gallery-*.tfrecord"), "gallery", "gallery_tfrecords")
    assert len(files) == 2 and files == sorted(files)


def _feature_set(rows):
    pids, cams, levels = (np.array(column) for column in zip(*rows))
    names = np.array([f"{i}.jpg" for i in range(len(rows))])
    return FeatureSet(levels[:, None].astype(np.float32), pids, cams, names)


def test_evaluate_features_hand_case_and_conventions():
    query, gallery = _feature_set(QUERY), _feature_set(GALLERY)
    standard = evaluate_features(query, gallery, max_rank=5)
    assert standard["mAP"] == pytest.approx(7 / 9) and standard["mINP"] == pytest.approx(7 / 9)
    assert standard["rank1"] == pytest.approx(2 / 3) and standard["feature_dim"] == 1
    official = evaluate_features(query, gallery, max_rank=5, mode="market_official")
    # CMC over all 4 queries; pid 3's match at rank 3: trapezoid AP ((0/2 + 1/3) / 2) = 1/6.
    assert official["rank1"] == pytest.approx(2 / 4) and official["cmc"][-1] == pytest.approx(3 / 4)
    assert official["mAP"] == pytest.approx((1 + 1 + 1 / 6) / 3)


def test_format_table_lists_every_metric():
    table = format_table(dict(rank1=0.5, rank5=1.0, mAP=0.25, mINP=0.125, num_valid_queries=2, num_queries=3,
                              distance="cosine", rerank=True, convention="standard (...)",
                              rerank_convention="zhong2017 (...)"))
    header, _, row, note = table.splitlines()
    assert header.split(" | ")[0].strip() == "rank-1" and "mINP" in header
    assert row.split() == ["50.00", "|", "100.00", "|", "25.00", "|", "12.50", "|", "2/3"]
    assert "cosine" in note and "re-ranking on (zhong2017 (...))" in note


def test_every_reranked_metric_carries_its_rerank_convention():
    rng = np.random.default_rng(0)
    rows = [(pid, camera, 0.0) for pid in range(6) for camera in (1, 2, 3)]
    query, gallery = _feature_set(rows[::3]), _feature_set(rows)
    query = query._replace(features=rng.normal(size=(len(rows[::3]), 4)))
    gallery = gallery._replace(features=rng.normal(size=(len(rows), 4)))
    plain = evaluate_features(query, gallery)
    zhong = evaluate_features(query, gallery, rerank=True)
    v1 = evaluate_features(query, gallery, rerank=True, rerank_convention="bgshift_v1")
    assert plain["rerank_convention"] is None
    assert zhong["rerank_convention"].startswith("zhong2017") and "squared" in zhong["rerank_convention"]
    assert v1["rerank_convention"].startswith("bgshift_v1")
    assert zhong["cmc"] != v1["cmc"] or zhong["mAP"] != v1["mAP"]  # the conventions rank differently here


def _small_model(kind):
    from bgshift_tf.models.reid import DA2S, IDE

    model_class = IDE if kind == "ide" else DA2S
    model = model_class(num_classes=3, backbone="densenet_small", input_shape=(64, 32, 3))
    dummy = tf.zeros([1, 64, 32, 3])
    model((dummy, dummy) if kind == "da2s" else dummy)
    return model


@pytest.mark.slow
def test_run_dir_is_loaded_in_process_and_by_the_entry_point(toy_records, tmp_path):
    import subprocess
    import sys

    model = _small_model("ide")
    run_dir = tmp_path / "ide_run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"model_class": "ide", "model": {**model.get_config(), "weights": None}})
    )
    tf.train.Checkpoint(model=model).save(str(run_dir / "checkpoints" / "ckpt"))
    common = dict(query_tfrecords=toy_records, gallery_tfrecords=toy_records, batch_size=4, flip_average=True)
    expected = evaluate_run(model=model, progress=False, **common)
    loaded = evaluate_run(str(run_dir), progress=False, **common)  # load_reid_model + default out path
    assert json.loads((run_dir / "metrics.json").read_text()) == loaded
    assert loaded["model"] == "IDE" and loaded["feature_dim"] == model.feature_dim
    assert loaded["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    np.testing.assert_allclose(loaded["cmc"], expected["cmc"], atol=1e-6)

    out = tmp_path / "metrics.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bgshift_tf.evaluate", f"--run_dir={run_dir}", f"--query_tfrecords={toy_records}",
         f"--gallery_tfrecords={toy_records}", f"--out={out}", "--batch_size=4", "--flip_average"],
        capture_output=True, text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "rank-1" in completed.stdout and "mINP" in completed.stdout
    written = json.loads(out.read_text())
    assert written["flip_average"] and written["num_valid_queries"] == 3
    assert written["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)


@pytest.mark.slow
def test_da2s_model_reads_soft_mask_and_original_images(toy_records, tmp_path):
    model = _small_model("da2s")
    with pytest.raises(ValueError, match="DA-2S needs the soft-mask images"):
        evaluate_run(model=model, query_tfrecords=toy_records, gallery_tfrecords=toy_records)
    soft = tmp_path / "soft"
    _write_split(soft, "query", QUERY, offset=-0.2)
    _write_split(soft, "gallery", GALLERY, offset=-0.2)
    metrics = evaluate_run(
        model=model, query_tfrecords=toy_records, gallery_tfrecords=toy_records, soft_mask_query_tfrecords=str(soft),
        soft_mask_gallery_tfrecords=str(soft), batch_size=4, progress=False,
    )
    assert metrics["model"] == "DA2S" and metrics["feature_dim"] == model.feature_dim
    assert metrics["num_valid_queries"] == 3


def _classic_feature(person, number):
    """The feature the CUHK03 test gives an image: its person index within the pair and image number."""
    return [person + 0.3 * number]


def _classic_embed(batch):
    """`_classic_feature` from the file name `<pair>_<person:03d>_<view>_<image:02d>.jpg`."""
    person = tf.strings.to_number(tf.strings.substr(batch["filename"], 2, 3), tf.float32)
    number = tf.strings.to_number(tf.strings.substr(batch["filename"], 8, 2), tf.float32)
    return tf.stack([person + 0.3 * number], axis=1)


@pytest.mark.slow
def test_cuhk03_classic_all_splits_mean_and_spread(tmp_path):
    mat_path = str(tmp_path / "cuhk-03.mat")
    truth = make_cuhk03_mat(mat_path)
    root = str(tmp_path / "classic")
    manifests = build_dataset_tfrecords("cuhk03_classic", mat_path, root, cuhk03_split="all", num_shards=1,
                                        progress=False)
    assert sorted(manifests) == [f"split_{s:02d}" for s in range(20)]

    # By hand from the fixture's truth: each split's test images in file order (pair, person, image),
    # pid = ids before the pair + person, camera = 2 (pair - 1) + view.
    ids_before = {pair: 3 + 2 * (pair - 2) if pair > 1 else 0 for pair in range(1, 6)}
    by_hand = []
    for test_ids in truth["testsets"]:
        rows = [(pair, person, j) for (pair, person, j) in sorted(truth["images"]) if (pair, person) in test_ids]
        by_hand.append(FeatureSet(
            np.array([_classic_feature(person, j + 1) for _, person, j in rows], np.float32),
            np.array([ids_before[pair] + person for pair, person, _ in rows]),
            np.array([2 * (pair - 1) + (1 if j < 5 else 2) for pair, _, j in rows]),
            np.array([f"{r}" for r in rows]),
        ))
    for mode in ("standard", "cuhk03_sgs"):
        out = tmp_path / mode / "classic.json"
        result = evaluate_cuhk03_classic(
            tfrecords_root=root, embed_fn=_classic_embed, image_size=(32, 16), batch_size=32, mode=mode,
            out_path=str(out), progress=False, features_cache_dir=str(tmp_path / "cache"),
        )
        assert json.loads(out.read_text()) == result and (tmp_path / mode / "classic.split_07.json").is_file()
        assert result["num_splits"] == 20 and result["convention"].startswith(mode)
        expected = [evaluate_features(split, split, mode=mode) for split in by_hand]
        for name in CUHK03_SUMMARY_METRICS:
            values = [metrics[name] for metrics in expected]
            assert [m[name] for m in result["per_split"]] == pytest.approx(values, abs=1e-9)
            assert result["summary"][name]["mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert result["summary"][name]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
        assert result["summary"]["mAP"]["min"] < result["summary"]["mAP"]["max"]  # the splits differ
