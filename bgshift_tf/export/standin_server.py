"""A small STAND-IN for TF Serving's REST API, for tests and local demos. It is NOT TensorFlow Serving.

No TF Serving binary can be installed on the build machine, so this server loads the exported SavedModels
with `tf.saved_model.load` and answers the subset of TF Serving's documented REST protocol
(https://www.tensorflow.org/tfx/serving/api_rest) that `bgshift_tf.export.client` uses:

    GET  /v1/models/<name>[/versions/<v>]              model status ({"model_version_status": [...]})
    POST /v1/models/<name>[/versions/<v>]:predict      {"signature_name": ..., "instances": [...]} (row)
                                                      or {"signature_name": ..., "inputs": ...} (columnar)
    GET  /v1/search/<index>, POST /v1/search/<index>     gallery search (not TF Serving's: `search_endpoint`)

Row requests get {"predictions": ...}, columnar ones {"outputs": ...}; a single-output signature answers
with bare values, a multi-output one with {output_name: value} objects; {"b64": "..."} objects become
bytes for string inputs. Every request gets an HTTP answer with {"error": "<message>"} when it fails:
    400  bad JSON (also non-UTF-8 or nested deeper than Python can parse), bad Content-Length, bad inputs,
         bytes that are not a JPEG or PNG image, an in-graph assertion of the signature
    404  unknown model, version or path          408  the body did not arrive within `request_timeout`
    411  no Content-Length                       413  body over `max_body_bytes`, or an image whose
    500  anything else (a bug; the message says what)     header says more than `max_image_pixels` pixels
It serves one thread per request (a backlog of `LISTEN_BACKLOG` waiting connections for bursts) on 127.0.0.1
and an ephemeral port by default. Production serving is `tensorflow/serving` (see BUILD_NOTES.md,
Deployment): it does batching, versions policies, gRPC, monitoring, none of which is here.

Usage (a local demo server; limits as flags; --indexes and --embedder add the gallery search endpoint):
    python -m bgshift_tf.export.standin_server --port=8501 --max_body_bytes=33554432 \
        --max_image_pixels=4194304 --models=sbsgan_generator=saved_models/sbsgan_generator \
        --indexes=synduke=runs/index/synduke --embedder=da2s_embedder
"""

import base64
import http.server
import io
import json
import os
import re
import threading

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from bgshift_tf.core import errors

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict)?$")


class BadRequest(ValueError):
    """A client error: answered with HTTP 400 and {"error": message}."""


class NotFound(LookupError):
    """Unknown model or version: answered with HTTP 404 and {"error": message}."""


class HTTPFailure(Exception):
    """A request answered with `status` (411, 413, 408) and {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


MAX_BODY_BYTES = 32 * 2**20  # a batch of 32 [256, 128, 3] images as JSON numbers is ~15 MB
MAX_IMAGE_PIXELS = 4096 * 4096  # per encoded image; a decoded image of this size is 48 MB of uint8 RGB
REQUEST_TIMEOUT = 30.0  # seconds to wait for a body that is slow to arrive
LISTEN_BACKLOG = 128  # connections waiting to be accepted


class ModelStore:
    """Loaded SavedModels by (name, version), from TF Serving base paths (`<base>/<name>/<version>/`).

    Args:
        model_base_paths: {model_name: base folder holding numeric version folders}. Every version found
            at start-up is loaded; requests without a version use the highest (TF Serving's default policy).
    """

    def __init__(self, model_base_paths):
        self.models = {}
        for name, base_path in model_base_paths.items():
            versions = sorted(int(v) for v in os.listdir(base_path) if v.isdigit())
            if not versions:
                raise FileNotFoundError(f"Model {name!r}: no numeric version folder in {base_path}")
            self.models[name] = {v: tf.saved_model.load(os.path.join(base_path, str(v))) for v in versions}

    def get(self, name, version=None):
        if name not in self.models:
            raise NotFound(f"Servable not found for request: model {name!r} (serving {sorted(self.models)})")
        versions = self.models[name]
        version = max(versions) if version is None else int(version)
        if version not in versions:
            raise NotFound(f"Servable not found for request: model {name!r} version {version} "
                           f"(available: {sorted(versions)})")
        return version, versions[version]

    def status(self, name, version=None):
        self.get(name, version)  # NotFound for an unknown model or version
        versions = sorted(self.models[name]) if version is None else [int(version)]
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in versions
        ]}


def _decode_b64(value):
    """Replaces {"b64": "..."} objects (at any depth) by their bytes."""
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise BadRequest(f"A JSON object in a tensor value must be {{\"b64\": ...}}; received keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as error:
            raise BadRequest(f"Invalid base64 in {{\"b64\": ...}}: {error}") from None
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _check_encoded_image(name, index, data, max_pixels):
    """Reads only the header of one encoded image: BadRequest unless JPEG/PNG, HTTPFailure 413 if too large."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:  # PIL's own limit, far above ours: still too large
        raise HTTPFailure(413, f"Input {name!r}[{index}] is too large to decode: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        image_format, width, height = None, 0, 0
    if image_format not in ("JPEG", "PNG"):
        raise BadRequest(f"Input {name!r}[{index}] holds bytes that are not an encoded JPEG or PNG image; "
                         f"their first bytes: {data[:16]!r}")
    if width * height > max_pixels:
        raise HTTPFailure(413, f"Input {name!r}[{index}] is a {width}x{height} image: {width * height} pixels is "
                               f"over the server's limit of {max_pixels} (--max_image_pixels)")


def _to_tensor(name, value, spec, max_pixels):
    """JSON value -> tf.Tensor of the signature's dtype, or BadRequest naming the input."""
    value = _decode_b64(value)
    if spec.dtype == tf.string:
        array = np.array(value, dtype=object)
        if array.size and not all(isinstance(v, bytes) for v in array.ravel()):
            raise BadRequest(f"Input {name!r} is a string (bytes) tensor: send {{\"b64\": ...}} objects.")
        for index, data in enumerate(array.ravel()):
            _check_encoded_image(name, index, data, max_pixels)
        return tf.constant(array, dtype=tf.string)
    try:
        array = np.array(value)
    except ValueError as error:
        raise BadRequest(f"Input {name!r} is not a rectangular array: {error}") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise BadRequest(f"Input {name!r} must hold numbers for dtype {spec.dtype.name}; received {array.dtype} values.")
    if spec.dtype.is_integer:
        if array.dtype.kind == "f" and np.any(array != np.round(array)):
            raise BadRequest(f"Input {name!r} has dtype {spec.dtype.name}; received non-integer values.")
        low, high = spec.dtype.min, spec.dtype.max
        if array.size and (array.min() < low or array.max() > high):
            raise BadRequest(f"Input {name!r} has dtype {spec.dtype.name}; received values outside "
                             f"[{low}, {high}] (min {array.min()}, max {array.max()}).")
    return tf.constant(array.astype(spec.dtype.as_numpy_dtype))


def _signature_inputs(signature):
    return signature.structured_input_signature[1]


def _parse_request(body, signature, max_pixels):
    """Request JSON -> ({input_name: tf.Tensor}, row_format: bool)."""
    specs = _signature_inputs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest('The request must have exactly one of "instances" (row format) or "inputs" (columnar).')
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest('"instances" must be a non-empty list (one entry per example).')
        if len(specs) == 1:
            columns = {next(iter(specs)): instances}
        else:
            if not all(isinstance(row, dict) and "b64" not in row for row in instances):
                raise BadRequest(f'With several inputs ({sorted(specs)}) each instance must be an object '
                                 'keyed by input name.')
            columns = {key: [row.get(key) for row in instances] for key in specs}
        row_format = True
    else:
        inputs = body["inputs"]
        is_named = isinstance(inputs, dict) and "b64" not in inputs
        columns = inputs if is_named else {next(iter(specs)): inputs} if len(specs) == 1 else None
        if columns is None:
            raise BadRequest(f'With several inputs ({sorted(specs)}) "inputs" must be an object keyed by input name.')
        row_format = False
    missing, unknown = sorted(set(specs) - set(columns)), sorted(set(columns) - set(specs))
    if missing or unknown or any(v is None for col in columns.values() if isinstance(col, list) for v in col):
        raise BadRequest(f"The signature takes inputs {sorted(specs)}; missing {missing}, unknown {unknown} "
                         "(or an instance without every input).")
    return {key: _to_tensor(key, columns[key], specs[key], max_pixels) for key in specs}, row_format


def _json_value(array):
    if array.dtype == object:
        return [_json_value(v) for v in array] if array.ndim else {"b64": base64.b64encode(array.item()).decode()}
    return array.tolist()


def _format_response(outputs, row_format):
    arrays = {key: value.numpy() for key, value in outputs.items()}
    if row_format:
        if len(arrays) == 1:
            return {"predictions": _json_value(next(iter(arrays.values())))}
        batch = len(next(iter(arrays.values())))
        return {"predictions": [{key: _json_value(a[i]) for key, a in arrays.items()} for i in range(batch)]}
    if len(arrays) == 1:
        return {"outputs": _json_value(next(iter(arrays.values())))}
    return {"outputs": {key: _json_value(a) for key, a in arrays.items()}}


def predict(store, name, version, body, max_pixels=MAX_IMAGE_PIXELS):
    """Answers one predict request body (parsed JSON); raises BadRequest / NotFound / HTTPFailure."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    _, model = store.get(name, version)
    signature_name = body.get("signature_name", "serving_default")
    if signature_name not in model.signatures:
        raise BadRequest(f"Serving signature name: {signature_name!r} not found in signature def "
                         f"(available: {sorted(model.signatures)})")
    signature = model.signatures[signature_name]
    inputs, row_format = _parse_request(body, signature, max_pixels)
    try:
        outputs = signature(**inputs)
    except tf.errors.InvalidArgumentError as error:
        raise BadRequest(_assertion_message(error.message)) from None
    return _format_response(outputs, row_format)


def _assertion_message(message):
    """The informative line of a TF error (the assertion text), without the graph-execution boilerplate."""
    for line in message.splitlines():
        if "assertion failed" in line or "Invalid JPEG" in line or "Unknown image" in line:
            return line.strip()
    return message.strip()


class _Handler(http.server.BaseHTTPRequestHandler):
    # Set per server class in StandInServer. `timeout` is StreamRequestHandler's socket timeout: a client
    # that promises more body than it sends gets 408 instead of holding a thread forever.
    store, max_body_bytes, max_pixels, timeout = None, MAX_BODY_BYTES, MAX_IMAGE_PIXELS, REQUEST_TIMEOUT
    search = None  # a search_endpoint.SearchStore when the server has gallery indexes

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name); quiet in tests
        pass

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _route(self, want_predict):
        match = _PATH.match(self.path)
        if match is None or bool(match["verb"]) != want_predict:
            raise NotFound(f"Malformed request: {self.command} {self.path}")
        return match["name"], match["version"]

    def _handle(self, work):
        """Runs `work` and answers every outcome with an HTTP status (see the module docstring)."""
        try:
            status, payload = 200, work()
        except BadRequest as error:
            status, payload = 400, {"error": str(error)}
        except NotFound as error:
            status, payload = 404, {"error": str(error)}
        except HTTPFailure as error:
            status, payload = error.status, {"error": str(error)}
        except RecursionError:
            status, payload = 400, {"error": "The request JSON is nested too deeply to parse."}
        except Exception as error:  # noqa: BLE001 (the server must answer; the message says what failed)
            status, payload = 500, {"error": f"Internal error of the stand-in server: {type(error).__name__}: {error}"}
        self._answer(status, payload)

    def _read_body(self):
        """The request body, after checking Content-Length against the limit (HTTPFailure / BadRequest)."""
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise HTTPFailure(411, "A predict request needs a Content-Length header.")
        if not length.strip().isdigit():
            self.close_connection = True  # the body's end is unknown: do not read it as the next request
            raise BadRequest(f"Content-Length must be a non-negative integer. Received: {length!r}")
        if int(length) > self.max_body_bytes:
            self.close_connection = True
            raise HTTPFailure(413, f"The request body of {int(length)} bytes is over the server's limit of "
                                   f"{self.max_body_bytes} bytes (--max_body_bytes)")
        try:
            data = self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            raise HTTPFailure(408, f"Content-Length says {length} bytes but the body did not arrive within "
                                   f"{self.timeout} s") from None
        if len(data) != int(length):  # the client half-closed early
            self.close_connection = True
            raise BadRequest(f"Content-Length says {length} bytes but the connection ended after {len(data)}")
        return data

    def _search_index_name(self):
        """The <index> of a /v1/search/<index> path (NotFound when this server has no indexes), else None."""
        prefix = "/v1/search/"
        if not self.path.startswith(prefix):
            return None
        if self.search is None:
            raise NotFound(f"This server has no gallery index (start it with --indexes): {self.path}")
        return self.path[len(prefix):]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        def work():
            index_name = self._search_index_name()
            if index_name is not None:
                return self.search.describe(index_name)
            return self.store.status(*self._route(want_predict=False))

        self._handle(work)

    def do_POST(self):  # noqa: N802
        def work():
            index_name = self._search_index_name()
            name, version = self._route(want_predict=True) if index_name is None else (None, None)
            try:
                body = json.loads(self._read_body() or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise BadRequest(f"The request body is not valid UTF-8 JSON: {error}") from None
            if index_name is not None:
                return self.search.search(index_name, body, self.max_pixels)
            return predict(self.store, name, version, body, self.max_pixels)

        self._handle(work)


class _ThreadingServer(http.server.ThreadingHTTPServer):
    """One daemon thread per request; a listen backlog for bursts (socketserver's default of 5 pending
    connections resets the rest of 50 clients connecting at once)."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG


class StandInServer:
    """The stand-in REST server in a background thread (NOT TF Serving; see the module docstring).

    Args:
        model_base_paths: {model_name: "<export_dir>/<model_name>"}.
        host, port: bind address; port 0 picks a free ephemeral port (see `.url`).
        max_body_bytes: larger request bodies are answered 413 without being read.
        max_image_pixels: an encoded image whose header gives more pixels is answered 413 undecoded.
        request_timeout: seconds a request's body may take to arrive (then 408).
        indexes: {index_name: gallery index folder} served at /v1/search/<index_name> (`search_endpoint`).
        embedder: the served model (in `model_base_paths`) that embeds image search queries; None: features only.

    Use as a context manager: `with StandInServer({...}) as server: RestClient(server.url, ...)`.
    """

    def __init__(self, model_base_paths, host="127.0.0.1", port=0, *, max_body_bytes=MAX_BODY_BYTES,
                 max_image_pixels=MAX_IMAGE_PIXELS, request_timeout=REQUEST_TIMEOUT, indexes=None, embedder=None):
        store, search = ModelStore(model_base_paths), None
        if indexes:
            # Imported here: faiss only when searching, and search_endpoint imports this module.
            from bgshift_tf.export.search_endpoint import SearchStore

            search = SearchStore(indexes, store, embedder)
        handler = type("Handler", (_Handler,), {
            "store": store, "max_body_bytes": int(max_body_bytes), "max_pixels": int(max_image_pixels),
            "timeout": float(request_timeout), "search": search,
        })
        self.httpd = _ThreadingServer((host, port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="standin-serving", daemon=True)

    @property
    def url(self):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def main(argv):
    """Serves `--models` until Ctrl-C (the usage line in the module docstring)."""
    from absl import flags

    del argv
    values = flags.FLAGS
    bad = [item for item in [*values.models, *values.indexes] if "=" not in item]
    if bad:
        raise errors.ArgumentError(f"--models and --indexes entries must be name=folder. Received: {bad}")
    models, indexes = (dict(item.split("=", 1) for item in items) for items in (values.models, values.indexes))
    with errors.user_errors(OSError, ValueError, NotFound):  # a missing model or index folder, a port in use
        server = StandInServer(models, values.host, values.port, max_body_bytes=values.max_body_bytes,
                               max_image_pixels=values.max_image_pixels, request_timeout=values.request_timeout,
                               indexes=indexes, embedder=values.embedder)
    print(f"stand-in REST server (NOT TF Serving) on {server.url} serving {sorted(models)}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        server.httpd.server_close()


if __name__ == "__main__":
    from absl import flags

    flags.DEFINE_list("models", None, "name=base_path pairs, e.g. sbsgan_generator=saved_models/sbsgan_generator.",
                      required=True)
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind.")
    flags.DEFINE_integer("port", 8501, "Port to bind (0: any free port).")
    flags.DEFINE_integer("max_body_bytes", MAX_BODY_BYTES, "Larger request bodies are answered HTTP 413.")
    flags.DEFINE_integer("max_image_pixels", MAX_IMAGE_PIXELS, "Encoded images with more pixels: HTTP 413.")
    flags.DEFINE_float("request_timeout", REQUEST_TIMEOUT, "Seconds a request body may take to arrive (then 408).")
    flags.DEFINE_list("indexes", [], "name=gallery_index_folder pairs served at /v1/search/<name>.")
    flags.DEFINE_string("embedder", None, "Served model (a --models name) that embeds image search queries.")
    errors.run(main, "standin_server")
