"""The stand-in server's gallery search endpoint (export/search_endpoint.py) and the bench's search section."""

import base64
import json
import os
import urllib.error
import urllib.request

import faiss
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.evaluation.gallery import ranked_lists
from bgshift_tf.evaluation.search import GalleryIndex, IndexSettings
from bgshift_tf.export import client
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export.search_endpoint import MAX_K
from bgshift_tf.export.standin_server import StandInServer
from export_helpers import GENERATOR_SIZE, post_json, random_images, tiny_ide

DIM = 128  # tiny_ide's feature size


def _clustered(num_ids=50, per_id=6, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    features = (rng.normal(size=(num_ids, dim))[pids - 1] + 0.5 * rng.normal(size=(len(pids), dim)))
    return features.astype(np.float32), pids, (np.arange(len(pids)) % 3 + 1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(7)
    root = tmp_path_factory.mktemp("search_endpoint")
    embedder_dir = saved_model_lib.export_embedder(tiny_ide(), str(root / "saved_models"), model_name="ide", version=1)
    embedder = tf.saved_model.load(embedder_dir)
    features, pids, camids = _clustered()
    paths = np.array([f"g/{i:04d}.jpg" for i in range(len(pids))])
    indexes = {kind: GalleryIndex.build(features, pids, camids, paths, kind=kind,
                                        settings=IndexSettings(pq_m=16, train_size=1000))
               for kind in ("flat", "hnsw", "ivfpq")}
    # A gallery of the embedder's own features of random images, for the image queries.
    gallery_images = random_images(GENERATOR_SIZE, 12, seed=3)
    image_features = embedder.signatures["embed"](images=tf.constant(gallery_images))["features"].numpy()
    indexes["images"] = GalleryIndex.build(image_features, np.arange(12) // 2, np.arange(12) % 2, None)
    # An empty index (GalleryIndex.build refuses one; a gallery split with no rows would make it).
    indexes["empty"] = GalleryIndex(faiss.IndexFlatIP(DIM), kind="flat", distance="cosine", pids=[], camids=[],
                                    paths=[], settings=IndexSettings())
    folders = {name: index.save(root / "indexes" / name) for name, index in indexes.items()}
    with StandInServer({"ide": os.path.dirname(embedder_dir)}, indexes=folders, embedder="ide") as server:
        yield {"url": server.url, "indexes": indexes, "features": features, "embedder": embedder}


def _queries(served, count=4):
    return served["features"][:count] + 0.05 * np.random.default_rng(1).normal(size=(count, DIM)).astype(np.float32)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_feature_query_equals_the_index_search(served, kind):
    queries = _queries(served)
    expected = ranked_lists(served["indexes"][kind], *served["indexes"][kind].search(queries, 7))
    status, answer = post_json(f"{served['url']}/v1/search/{kind}", {"features": queries.tolist(), "k": 7})
    assert status == 200 and answer["kind"] == kind and answer["k"] == 7
    assert answer["results"] == expected  # same entries, same float64 distances
    status, single = post_json(f"{served['url']}/v1/search/{kind}", {"feature": queries[0].tolist()})
    assert status == 200 and len(single["results"]) == 1 and len(single["results"][0]) == 10  # default k
    assert single["results"][0][:7] == expected[0]
    assert client.RestClient(served["url"], "ide").search(kind, queries, k=7) == expected


def test_image_query_equals_embedding_then_feature_query(served):
    jpegs = [tf.io.encode_jpeg(image).numpy() for image in random_images(GENERATOR_SIZE, 2, seed=9)]
    local = served["embedder"].signatures["embed_jpeg"](image_bytes=tf.constant(jpegs))["features"].numpy()
    index = served["indexes"]["images"]
    expected = ranked_lists(index, *index.search(local, 5))
    rest = client.RestClient(served["url"], "ide")
    by_image = rest.search("images", image_bytes=jpegs, k=5)
    by_feature = rest.search("images", rest.embed_jpeg(jpegs), k=5)
    for got in (by_image, by_feature):
        assert [[e["path"] for e in q] for q in got] == [[e["path"] for e in q] for q in expected]
        np.testing.assert_allclose([[e["distance"] for e in q] for q in got],
                                   [[e["distance"] for e in q] for q in expected], atol=1e-5)
    status, answer = post_json(f"{served['url']}/v1/search/images",
                           {"image_b64": base64.b64encode(jpegs[0]).decode(), "k": 5})
    # One image alone against the same image in a batch of two: oneDNN's kernels may differ by batch size in
    # the last bits (seen on an AVX2 Zen 3), so the ranking must agree exactly and the distances to 1e-5.
    assert status == 200 and [e["path"] for e in answer["results"][0]] == [e["path"] for e in by_image[0]]
    np.testing.assert_allclose([e["distance"] for e in answer["results"][0]], [e["distance"] for e in by_image[0]],
                               atol=1e-5)
    pixels = random_images(GENERATOR_SIZE, 1, seed=9)
    status, answer = post_json(f"{served['url']}/v1/search/images", {"images": pixels.tolist(), "k": 3})
    local = served["embedder"].signatures["embed"](images=tf.constant(pixels))["features"].numpy()
    assert status == 200 and [e["path"] for e in answer["results"][0]] == \
        [e["path"] for e in ranked_lists(index, *index.search(local, 3))[0]]
    status, answer = post_json(f"{served['url']}/v1/search/images", {"image_b64": base64.b64encode(b"not an image").decode()})
    assert status == 400 and "not an encoded JPEG or PNG" in answer["error"]


@pytest.mark.parametrize("body, status, message", [
    ({"feature": [0.5] * (DIM - 1)}, 400, f"has {DIM - 1} values; the index holds {DIM}-d"),
    ({"features": [[0.5] * DIM, [0.5] * (DIM + 1)]}, 400, f"row 1 has {DIM + 1} values"),
    ({"feature": [0.0] * DIM}, 400, "all-zero"),
    ({"feature": ["a"] * DIM}, 400, "numbers only"),
    ({"feature": [0.5] * DIM, "k": 0}, 400, f"'k' must be an integer in [1, {MAX_K}]"),
    ({"feature": [0.5] * DIM, "k": MAX_K + 1}, 400, "'k' must be an integer"),
    ({"feature": [0.5] * DIM, "k": 2.5}, 400, "'k' must be an integer"),
    ({"feature": [0.5] * DIM, "features": [[0.5] * DIM]}, 400, "exactly one of"),
    ({"k": 3}, 400, "exactly one of"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_queries_get_400_naming_the_fault(served, body, status, message):
    got_status, answer = post_json(f"{served['url']}/v1/search/flat", body)
    assert got_status == status and message in answer["error"]
    with pytest.raises(client.ServingHTTPError, match="HTTP 400"):
        client.RestClient(served["url"], "ide").search("flat", [0.5] * (DIM - 1))


def test_non_finite_unknown_and_empty_indexes(served):
    request = urllib.request.Request(f"{served['url']}/v1/search/flat", method="POST",
                                     data=('{"feature": [NaN' + ", 0.5" * (DIM - 1) + "]}").encode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400 and "NaN/Infinity" in json.loads(caught.value.read())["error"]
    status, answer = post_json(f"{served['url']}/v1/search/flat", {"feature": [1e39] + [0.5] * (DIM - 1)})
    assert status == 400 and "beyond float32" in answer["error"]
    status, answer = post_json(f"{served['url']}/v1/search/nowhere", {"feature": [0.5] * DIM})
    assert status == 404 and "'nowhere'" in answer["error"] and "flat" in answer["error"]
    status, answer = post_json(f"{served['url']}/v1/search/empty", {"feature": [0.5] * DIM})
    assert status == 400 and "is empty (0 items)" in answer["error"]
    with urllib.request.urlopen(f"{served['url']}/v1/search/hnsw", timeout=30) as response:
        meta = json.loads(response.read())
    assert meta["index"] == "hnsw" and meta["kind"] == "hnsw" and meta["dim"] == DIM and meta["size"] == 300


def test_server_without_indexes_or_embedder(served, tmp_path):
    index = served["indexes"]["flat"]
    folder = index.save(tmp_path / "flat")
    with StandInServer({}, indexes={"flat": folder}) as server:  # no embedder: feature queries only
        status, answer = post_json(f"{server.url}/v1/search/flat", {"images_b64": ["AAAA"]})
        assert status == 400 and "needs an embedder model" in answer["error"]
        status, answer = post_json(f"{server.url}/v1/search/flat", {"feature": served["features"][0].tolist(), "k": 3})
        assert status == 200 and answer["results"][0][0]["path"] == "g/0000.jpg"
    with StandInServer({}) as server:
        status, answer = post_json(f"{server.url}/v1/search/flat", {"feature": [0.5] * DIM})
        assert status == 404 and "no gallery index" in answer["error"]
