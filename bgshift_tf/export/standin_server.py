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
bytes for string inputs (the request checks and response formats: `rest_protocol`). Every request gets an
HTTP answer with {"error": "<message>"} when it fails:
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

import http.server
import json
import os
import re
import threading

import tensorflow as tf

from bgshift_tf.core import errors
from bgshift_tf.export.rest_protocol import MAX_IMAGE_PIXELS, BadRequest, HTTPFailure, NotFound, predict

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict)?$")

MAX_BODY_BYTES = 32 * 2**20  # a batch of 32 [256, 128, 3] images as JSON numbers is ~15 MB
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
            # Imported here: faiss only when searching.
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
