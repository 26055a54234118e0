"""The serving client against the stand-in REST server (NOT TF Serving; see standin_server's docstring):
round trips (row/columnar, pixels and base64 JPEG), the REST protocol details, and every error path."""

import base64
import http.server
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from bgshift_tf.export import client, client_job
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.export.standin_server import StandInServer
from export_helpers import GENERATOR_SIZE, REID_SIZE, post_json, random_images, tiny_generator, tiny_ide


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(5)
    export_dir = str(tmp_path_factory.mktemp("saved_models"))
    generator_dir = saved_model_lib.export_generator(tiny_generator(), export_dir, version=1)
    embedder_dir = saved_model_lib.export_embedder(tiny_ide(), export_dir, model_name="ide_embedder", version=2)
    base_paths = {"sbsgan_generator": os.path.dirname(generator_dir), "ide_embedder": os.path.dirname(embedder_dir)}
    server = StandInServer(base_paths).start()
    yield {"url": server.url, "base_paths": base_paths, "generator": tf.saved_model.load(generator_dir),
           "embedder": tf.saved_model.load(embedder_dir)}
    server.stop()


def _local(model, signature, **inputs):
    return {k: v.numpy() for k, v in model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.mark.parametrize("request_format", ["instances", "inputs"])
def test_pixel_round_trips_match_the_saved_model(served, request_format):
    images = random_images((40, 20), 2, seed=1)  # any size: the signature resizes to the trained size
    generator = client.RestClient(served["url"], "sbsgan_generator", request_format=request_format)
    masks = generator.soft_mask(images)
    assert masks.dtype == np.uint8 and masks.shape == (2, *GENERATOR_SIZE, 3)
    np.testing.assert_array_equal(masks, _local(served["generator"], "soft_mask", images=images)["images_uint8"])
    styled = generator.style_transfer(images, [2, 0])
    expected = _local(served["generator"], "style_transfer", images=images, target_domain=np.array([2, 0], np.int32))
    np.testing.assert_array_equal(styled, expected["images_uint8"])
    features = client.RestClient(served["url"], "ide_embedder", version=2, request_format=request_format).embed(images)
    assert features.dtype == np.float32 and features.shape == (2, 128)
    np.testing.assert_allclose(features, _local(served["embedder"], "embed", images=images)["features"], rtol=1e-5,
                               atol=1e-5)


def test_base64_jpeg_round_trip(served):
    jpegs = [tf.io.encode_jpeg(image).numpy() for image in random_images(GENERATOR_SIZE, 2, seed=2)]
    masks = client.RestClient(served["url"], "sbsgan_generator").soft_mask_jpeg(jpegs)
    expected = _local(served["generator"], "soft_mask_jpeg", image_bytes=np.array(jpegs, dtype=object))
    np.testing.assert_array_equal(masks, expected["images_uint8"])
    features = client.RestClient(served["url"], "ide_embedder").embed_jpeg(jpegs)
    assert features.shape == (2, 128)


def test_rest_protocol_shapes(served):
    url = f"{served['url']}/v1/models/sbsgan_generator/versions/1:predict"
    image = random_images(GENERATOR_SIZE, 1)[0].tolist()
    status, rows = post_json(url, {"signature_name": "style_transfer",
                               "instances": [{"images": image, "target_domain": 1}]})
    assert status == 200 and sorted(rows["predictions"][0]) == ["images_float", "images_uint8"]
    status, columns = post_json(url, {"signature_name": "style_transfer", "inputs": {"images": [image], "target_domain": [1]}})
    assert status == 200 and np.array(columns["outputs"]["images_uint8"]).shape == (1, *GENERATOR_SIZE, 3)
    assert columns["outputs"]["images_uint8"] == [rows["predictions"][0]["images_uint8"]]
    status, default = post_json(url.replace("/versions/1", ""), {"instances": [image]})  # serving_default = soft_mask
    assert status == 200 and len(default["predictions"]) == 1
    status, single = post_json(f"{served['url']}/v1/models/ide_embedder:predict",
                           {"signature_name": "embed", "instances": [random_images(REID_SIZE, 1)[0].tolist()]})
    assert status == 200 and np.array(single["predictions"]).shape == (1, 128)  # one output: bare values
    with urllib.request.urlopen(f"{served['url']}/v1/models/ide_embedder", timeout=30) as response:
        assert json.loads(response.read()) == {"model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.RestClient(served["url"], "sbsgan_generator", version=1).status()["model_version_status"][0]["version"] == "1"


_BAD_BODIES = [
    ({"signature_name": "soft_mask"}, 'exactly one of "instances"'),
    ({"signature_name": "nope", "instances": [[0]]}, "'nope' not found"),
    ({"signature_name": "soft_mask_jpeg", "instances": [{"b64": "%%%"}]}, "Invalid base64"),
    ({"signature_name": "soft_mask_jpeg", "instances": [{"b64": base64.b64encode(b"GIF89a").decode()}]},
     "not an encoded JPEG or PNG"),
    ({"signature_name": "soft_mask", "instances": [[[[300, 0, 0]]]]}, "outside [0, 255]"),
    ({"signature_name": "style_transfer", "instances": [{"images": [[[0, 0, 0]]]}]}, "missing"),
]


def test_server_answers_400_with_error_body(served):
    for body, message in _BAD_BODIES:
        status, answer = post_json(f"{served['url']}/v1/models/sbsgan_generator:predict", body)
        assert status == 400 and message in answer["error"], (body, answer)


_SERVER_SIDE_ERRORS = [
    (lambda c: c.soft_mask(random_images(GENERATOR_SIZE, 1)[0], validate=False), r"must have rank 4 .*\[32 16 3\]"),
    (lambda c: c.soft_mask(random_images(GENERATOR_SIZE, 1)[..., :2], validate=False), "must have 3 channels"),
    (lambda c: c.style_transfer(random_images(GENERATOR_SIZE, 2), [0, 7]), r"values must be in \[0, 3\).*\[0 7\]"),
    (lambda c: c.soft_mask_jpeg([b"\x00\x01 not a jpeg"]), "not an encoded JPEG or PNG"),
    (lambda c: c.soft_mask(random_images(GENERATOR_SIZE, 1) + 0.5, validate=False), "non-integer values"),
]


def test_server_side_errors_reach_the_client(served):
    for call, message in _SERVER_SIDE_ERRORS:
        with pytest.raises(client.ServingHTTPError, match=message) as raised:
            call(client.RestClient(served["url"], "sbsgan_generator"))
        assert raised.value.status == 400


_CLIENT_SIDE_ERRORS = [
    (lambda c: c.soft_mask(np.zeros((32, 16, 3), np.uint8)), r"\[N, H, W, 3\].*shape=\(32, 16, 3\)"),
    (lambda c: c.soft_mask(np.zeros((1, 32, 16, 1), np.uint8)), r"shape=\(1, 32, 16, 1\)"),
    (lambda c: c.soft_mask(np.zeros((1, 32, 16, 3), np.float32)), "uint8 .*dtype=float32"),
    (lambda c: c.style_transfer(np.zeros((2, 32, 16, 3), np.uint8), [0]), r"`target_domain` must be \[N\]"),
]


def test_client_side_input_checks():
    for call, message in _CLIENT_SIDE_ERRORS:
        with pytest.raises(ValueError, match=message):
            call(client.RestClient("http://127.0.0.1:1", "sbsgan_generator"))


def test_unknown_model_gives_http_404_with_tf_serving_error_text(served):
    with pytest.raises(client.ServingHTTPError, match="HTTP 404: Servable not found.*'nope'") as raised:
        client.RestClient(served["url"], "nope").soft_mask(random_images(GENERATOR_SIZE, 1))
    assert raised.value.status == 404
    with pytest.raises(client.ServingHTTPError, match=r"version 9 \(available: \[1\]\)"):
        client.RestClient(served["url"], "sbsgan_generator", version=9).status()


def _raw_request(url, request: bytes, timeout=20.0):
    """Sends raw bytes on a loopback socket; returns (HTTP status, parsed JSON body). Bounded by `timeout`."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post_bytes(path, body: bytes, content_length=None):
    length = b"" if content_length is False else b"Content-Length: %b\r\n" % (
        str(len(body)).encode() if content_length is None else content_length)
    return b"POST %b HTTP/1.1\r\nHost: x\r\n%bConnection: close\r\n\r\n%b" % (path.encode(), length, body)


def _png_header(width, height):
    """A PNG claiming `width` x `height` with no pixel data: a 1 kB file a full decode would expand hugely."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _jpeg_body(data):
    return json.dumps({"signature_name": "soft_mask_jpeg", "instances": [{"b64": base64.b64encode(data).decode()}]})


_PREDICT = "/v1/models/sbsgan_generator:predict"
_FAULTS = [  # (request bytes, expected status, text in the error)
    (_post_bytes(_PREDICT, b"\xff\xfe\x00 not utf-8"), 400, "not valid UTF-8 JSON"),
    (_post_bytes(_PREDICT, _jpeg_body(b"\xff\xfe\x80\x81 non-UTF-8 bytes").encode()), 400,
     "'image_bytes'[0] holds bytes that are not an encoded JPEG or PNG"),
    (_post_bytes(_PREDICT, b"[" * 100_000 + b"]" * 100_000), 400, "nested too deeply"),
    (_post_bytes(_PREDICT, ('{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()), 400, "nested"),
    (_post_bytes(_PREDICT, b"{}", b"abc"), 400, "Content-Length must be a non-negative integer. Received: 'abc'"),
    (_post_bytes(_PREDICT, b"{}", b"-5"), 400, "Received: '-5'"),
    (_post_bytes(_PREDICT, b"{}", False), 411, "needs a Content-Length"),
    (_post_bytes(_PREDICT, b"{}", b"999999999999"), 413, "over the server's limit of 1048576 bytes"),
    (_post_bytes(_PREDICT, b"{}", b"100"), 408, "says 100 bytes but the body did not arrive within 1.0 s"),
    (_post_bytes(_PREDICT, _jpeg_body(_png_header(20000, 20000)).encode()), 413,
     "too large to decode: Image size (400000000 pixels)"),
    (_post_bytes(_PREDICT, _jpeg_body(_png_header(65, 64)).encode()), 413, "over the server's limit of 4096"),
    (b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n", 404, "Malformed request"),
]


def test_fault_injection_every_bad_request_gets_an_http_answer(served):
    limits = {"max_body_bytes": 2**20, "max_image_pixels": 64 * 64, "request_timeout": 1.0}
    with StandInServer(served["base_paths"], **limits) as server:
        for request, status, message in _FAULTS:
            answer = _raw_request(server.url, request)
            assert answer[0] == status and message in answer[1]["error"], (request[:80], answer)
        jpegs = [tf.io.encode_jpeg(image).numpy() for image in random_images(GENERATOR_SIZE, 1, seed=3)]
        masks = client.RestClient(server.url, "sbsgan_generator").soft_mask_jpeg(jpegs)
    expected = _local(served["generator"], "soft_mask_jpeg", image_bytes=np.array(jpegs, dtype=object))
    np.testing.assert_array_equal(masks, expected["images_uint8"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_connection_refused():
    with pytest.raises(client.ServerUnreachableError, match="Connection refused"):
        client.RestClient(f"http://127.0.0.1:{_free_port()}", "m").soft_mask(random_images(GENERATOR_SIZE, 1))


def test_unreachable_server_timeout():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(client.ServerUnreachableError, match="timed out.*timeout 0.3 s"):
            client.RestClient(url, "m", timeout=0.3).status()


class _FixedAnswer(http.server.BaseHTTPRequestHandler):
    answer = (200, b"{}")

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


_BAD_RESPONSES = [
    (200, json.dumps({"predictions": [{"images_float": [[[[0.0] * 3]]]}]}), client.BadResponseError,
     "no output 'images_uint8'"),
    (200, json.dumps({"predictions": [{"images_uint8": [[0, 0, 0]]}]}), client.BadResponseError,
     r"rank 4 and batch 1; received shape \(1, 1, 3\)"),
    (200, json.dumps({"outputs": {"images_uint8": [[[[999, 0, 0]]]]}}), client.BadResponseError, "outside"),
    (200, json.dumps({"result": 1}), client.BadResponseError, 'neither "predictions" nor "outputs"'),
    (200, "<html>proxy</html>", client.BadResponseError, "not JSON"),
    (500, json.dumps({"error": "Resource exhausted: OOM"}), client.ServingHTTPError, "HTTP 500: Resource exhausted"),
    (503, "upstream down", client.ServingHTTPError, "HTTP 503: upstream down"),
]


def test_bad_responses_are_reported():
    for status, body, error, message in _BAD_RESPONSES:
        handler = type("Handler", (_FixedAnswer,), {"answer": (status, body.encode())})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(error, match=message):
                client.RestClient(f"http://127.0.0.1:{server.server_address[1]}", "m").soft_mask(
                    random_images(GENERATOR_SIZE, 1))
        finally:
            server.shutdown()
            server.server_close()


def test_grpc_tensor_protos_round_trip_and_unreachable():
    if not client.grpc_available():
        pytest.skip("grpc / tensorflow-serving-api not importable")
    for value in (random_images(GENERATOR_SIZE, 2), np.array([0, 2], np.int32), np.linspace(0, 1, 6, dtype=np.float32)):
        proto = client._to_tensor_proto(value)
        np.testing.assert_array_equal(tf.make_ndarray(proto), value)
        np.testing.assert_array_equal(client._from_tensor_proto(proto), value)
    assert list(tf.make_ndarray(client._to_tensor_proto([b"ab", b"c"]))) == [b"ab", b"c"]
    grpc_client = client.GrpcClient(f"127.0.0.1:{_free_port()}", "sbsgan_generator", timeout=2)
    with pytest.raises(client.ServerUnreachableError, match="UNAVAILABLE|DEADLINE_EXCEEDED"):
        grpc_client.soft_mask(random_images(GENERATOR_SIZE, 1))


@pytest.mark.slow
def test_command_line_client_writes_pngs_and_features(served, tmp_path):
    files = []
    for i, image in enumerate(random_images((48, 24), 2, seed=8)):
        path = tmp_path / f"person_{i}.jpg"
        Image.fromarray(image).save(path, quality=95)
        files.append(str(path))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    base = [sys.executable, "-m", "bgshift_tf.serving_client", f"--server={served['url']}"]
    for extra in (["--model=sbsgan_generator", "--signature=soft_mask_jpeg", f"--out_dir={tmp_path / 'masks'}"],
                  ["--model=ide_embedder", "--signature=embed", f"--out_dir={tmp_path / 'features'}"]):
        result = subprocess.run(base + extra + [f"--images={tmp_path}/*.jpg"], capture_output=True, text=True,
                                timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
    masks = [np.asarray(Image.open(tmp_path / "masks" / f"person_{i}.png")) for i in range(2)]
    expected = _local(served["generator"], "soft_mask_jpeg",
                      image_bytes=np.array([open(f, "rb").read() for f in files], dtype=object))["images_uint8"]
    np.testing.assert_array_equal(np.stack(masks), expected)
    features = np.load(tmp_path / "features" / "features.npy")
    assert features.shape == (2, 128)
    assert (tmp_path / "features" / "features_files.txt").read_text().split() == files
    bad = subprocess.run(base + ["--model=sbsgan_generator", "--signature=style_transfer", f"--images={files[0]}",
                                 f"--out_dir={tmp_path / 'x'}"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "needs --target_domain" in bad.stderr


def test_load_images_requires_equal_sizes_or_a_resize(tmp_path):
    for name, size in (("a.png", (10, 6)), ("b.png", (12, 6))):
        Image.fromarray(random_images(size, 1)[0]).save(tmp_path / name)
    paths = client_job.expand_image_paths(f"{tmp_path}/*.png")
    with pytest.raises(ValueError, match="differ in size"):
        client_job.load_images(paths)
    assert client_job.load_images(paths, size=(8, 4)).shape == (2, 8, 4, 3)
    with pytest.raises(ValueError, match="No image files"):
        client_job.expand_image_paths(f"{tmp_path}/*.jpg")
