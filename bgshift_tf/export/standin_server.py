"""A small STAND-IN for TF Serving's REST API, for tests and local demos. It is NOT TensorFlow Serving.

No TF Serving binary can be installed on the build machine, so this server loads the exported SavedModels
with `tf.saved_model.load` and answers the subset of TF Serving's documented REST protocol
(https://www.tensorflow.org/tfx/serving/api_rest) that `bgshift_tf.export.client` uses:

    GET  /v1/models/<name>[/versions/<v>]              model status ({"model_version_status": [...]})
    POST /v1/models/<name>[/versions/<v>]:predict      {"signature_name": ..., "instances": [...]} (row)
                                                      or {"signature_name": ..., "inputs": ...} (columnar)

Row requests get {"predictions": ...}, columnar ones {"outputs": ...}; a single-output signature answers
with bare values, a multi-output one with {output_name: value} objects; {"b64": "..."} objects become
bytes for string inputs; bad input answers HTTP 400 {"error": "<message>"}, an unknown model or version 404.
It serves one thread per request on 127.0.0.1 and an ephemeral port by default. Production serving is
`tensorflow/serving` (see BUILD_NOTES.md, Deployment): it does batching, versions policies, gRPC,
monitoring, none of which is here.
"""

import base64
import http.server
import json
import os
import re
import threading

import numpy as np
import tensorflow as tf

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict)?$")


class BadRequest(ValueError):
    """A client error: answered with HTTP 400 and {"error": message}."""


class NotFound(LookupError):
    """Unknown model or version: answered with HTTP 404 and {"error": message}."""


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


def _to_tensor(name, value, spec):
    """JSON value -> tf.Tensor of the signature's dtype, or BadRequest naming the input."""
    value = _decode_b64(value)
    if spec.dtype == tf.string:
        array = np.array(value, dtype=object)
        if array.size and not all(isinstance(v, bytes) for v in array.ravel()):
            raise BadRequest(f"Input {name!r} is a string (bytes) tensor: send {{\"b64\": ...}} objects.")
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


def _parse_request(body, signature):
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
    return {key: _to_tensor(key, columns[key], specs[key]) for key in specs}, row_format


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


def predict(store, name, version, body):
    """Answers one predict request body (parsed JSON); raises BadRequest / NotFound."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    _, model = store.get(name, version)
    signature_name = body.get("signature_name", "serving_default")
    if signature_name not in model.signatures:
        raise BadRequest(f"Serving signature name: {signature_name!r} not found in signature def "
                         f"(available: {sorted(model.signatures)})")
    signature = model.signatures[signature_name]
    inputs, row_format = _parse_request(body, signature)
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
    store = None  # set per server class in StandInServer

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name); quiet in tests
        pass

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, want_predict):
        match = _PATH.match(self.path)
        if match is None or bool(match["verb"]) != want_predict:
            raise NotFound(f"Malformed request: {self.command} {self.path}")
        return match["name"], match["version"]

    def _handle(self, work):
        try:
            self._answer(200, work())
        except BadRequest as error:
            self._answer(400, {"error": str(error)})
        except NotFound as error:
            self._answer(404, {"error": str(error)})

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._handle(lambda: self.store.status(*self._route(want_predict=False)))

    def do_POST(self):  # noqa: N802
        def work():
            name, version = self._route(want_predict=True)
            length = int(self.headers.get("Content-Length", 0))
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except json.JSONDecodeError as error:
                raise BadRequest(f"The request body is not valid JSON: {error}") from None
            return predict(self.store, name, version, body)

        self._handle(work)


class StandInServer:
    """The stand-in REST server in a background thread (NOT TF Serving; see the module docstring).

    Args:
        model_base_paths: {model_name: "<export_dir>/<model_name>"}.
        host, port: bind address; port 0 picks a free ephemeral port (see `.url`).

    Use as a context manager: `with StandInServer({...}) as server: RestClient(server.url, ...)`.
    """

    def __init__(self, model_base_paths, host="127.0.0.1", port=0):
        handler = type("Handler", (_Handler,), {"store": ModelStore(model_base_paths)})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
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
