"""The stand-in server (export/standin_server.py) and its search endpoint (export/search_endpoint.py) fed
careless requests (issue 25 item 3, case 3): wrong rank, image size or channel count, a body over the
limit, non-JSON; and 50 good requests at once from threads, each answered as it is one at a time.

A bad request gets 400 (413 for a body over --max_body_bytes, the HTTP status for it) with an error naming
the input at fault; the server keeps serving afterwards.
"""

import base64
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.evaluation.search import GalleryIndex
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export.standin_server import StandInServer
from export_helpers import GENERATOR_SIZE, REID_SIZE, post_json, random_images, tiny_generator, tiny_ide

_MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(11)
    root = tmp_path_factory.mktemp("careless_server")
    generator_dir = saved_model_lib.export_generator(tiny_generator(), str(root / "models"), version=1)
    embedder_dir = saved_model_lib.export_embedder(tiny_ide(), str(root / "models"), model_name="ide", version=1)
    embedder = tf.saved_model.load(embedder_dir)
    gallery = embedder.signatures["embed"](images=tf.constant(random_images(REID_SIZE, 8, seed=4)))["features"]
    index = GalleryIndex.build(gallery.numpy(), np.arange(8) // 2, np.arange(8) % 2, None).save(root / "index")
    with StandInServer({"gen": os.path.dirname(generator_dir), "ide": os.path.dirname(embedder_dir)},
                       max_body_bytes=_MAX_BODY, indexes={"g": index}, embedder="ide") as server:
        yield {"url": server.url, "dim": int(gallery.shape[1])}


def _image(size, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(*size, channels)).tolist()


_GEN = "/v1/models/gen:predict"
_IDE = "/v1/models/ide:predict"
_BAD = [  # (path, body, status, what the error must name)
    (_GEN, {"instances": [_image(GENERATOR_SIZE)[0]]}, 400, "`images` must have rank 4"),  # rows of [W, 3]
    (_GEN, {"inputs": [[[[[0, 0, 0]]]]]}, 400, "`images` must have rank 4"),  # rank 5
    (_GEN, {"instances": [_image(GENERATOR_SIZE, channels=4)]}, 400, "`images` must have 3 channels"),
    (_GEN, {"instances": [_image(GENERATOR_SIZE, channels=1)]}, 400, "`images` must have 3 channels"),
    (_GEN, {"inputs": [[[]]]}, 400, "`images` must have rank 4"),  # JSON cannot spell [1, 0, 0, 3]: [1, 0]
    (_IDE, {"signature_name": "embed", "instances": [_image(REID_SIZE, channels=2)]}, 400, "`images` must have 3"),
    (_IDE, {"signature_name": "embed", "instances": [[[0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]}, 400,
     "Input 'images' is not a rectangular array"),  # images of two sizes in one batch
    ("/v1/search/g", {"images": [_image(REID_SIZE, channels=4)]}, 400, "`images` must have 3 channels"),
    ("/v1/search/g", {"feature": [0.5] * 7}, 400, "Query 'feature' has 7 values"),
    ("/v1/search/g", {"features": [[0.5, 0.5]]}, 400, "Query 'features' row 0 has 2 values"),
]


@pytest.mark.parametrize("path, body, status, named", _BAD, ids=[f"{i}" for i in range(len(_BAD))])
def test_a_request_of_the_wrong_shape_gets_400_naming_the_input(served, path, body, status, named):
    got, answer = post_json(served["url"] + path, body)
    assert got == status and named in answer["error"], (got, answer)


def test_another_image_size_is_resized_not_refused(served):
    for size in ((8, 4), (50, 70)):  # the signatures resize to the trained size, as documented
        got, answer = post_json(served["url"] + _GEN, {"instances": [_image(size)]})
        assert got == 200 and np.array(answer["predictions"][0]["images_uint8"]).shape == (*GENERATOR_SIZE, 3)


def _raw(url, request):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _post_raw(path, body):
    return b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (
        path.encode(), len(body), body)


@pytest.mark.parametrize("path", [_GEN, "/v1/search/g"])
def test_non_json_and_too_large_bodies(served, path):
    status, body = _raw(served["url"], _post_raw(path, b"images=1,2,3"))
    assert status == 400 and "not valid UTF-8 JSON" in body
    status, body = _raw(served["url"], _post_raw(path, b'{"instances": [' + b"0," * _MAX_BODY + b"0]}"))
    assert status == 413 and f"over the server's limit of {_MAX_BODY} bytes (--max_body_bytes)" in body


def _good_requests(dim):
    """50 good requests of four kinds (generator pixels, embedder base64 JPEG, search by feature and image)."""
    requests = []
    for i in range(50):
        kind = i % 4
        if kind == 0:
            requests.append((_GEN, {"instances": random_images(GENERATOR_SIZE, 1, seed=i).tolist()}))
        elif kind == 1:
            jpeg = tf.io.encode_jpeg(random_images(REID_SIZE, 1, seed=i)[0]).numpy()
            requests.append((_IDE, {"signature_name": "embed_jpeg",
                                    "instances": [{"b64": base64.b64encode(jpeg).decode()}]}))
        elif kind == 2:
            feature = np.random.default_rng(i).normal(size=dim).tolist()
            requests.append(("/v1/search/g", {"feature": feature, "k": 3}))
        else:
            requests.append(("/v1/search/g", {"images": random_images(REID_SIZE, 1, seed=i).tolist(), "k": 3}))
    return requests


def test_50_concurrent_requests_get_the_one_at_a_time_answers(served):
    requests = _good_requests(served["dim"])
    one_at_a_time = [post_json(served["url"] + path, body) for path, body in requests]
    assert all(status == 200 for status, _ in one_at_a_time), [a for s, a in one_at_a_time if s != 200][:2]
    with ThreadPoolExecutor(max_workers=50) as pool:
        at_once = list(pool.map(lambda request: post_json(served["url"] + request[0], request[1], timeout=120),
                                requests))
    for number, (alone, together) in enumerate(zip(one_at_a_time, at_once)):
        assert together[0] == 200, (number, together)
        if requests[number][0] == _IDE:  # float features: equal up to float32 rounding of another schedule
            np.testing.assert_allclose(together[1]["predictions"], alone[1]["predictions"], rtol=1e-5, atol=1e-6)
        else:
            assert together[1] == alone[1], number
    assert post_json(served["url"] + "/v1/search/g", {"feature": [0.5] * served["dim"], "k": 1})[0] == 200
