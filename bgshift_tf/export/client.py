"""Client for the exported models behind TF Serving: REST (standard library urllib + numpy) and gRPC.

REST follows TF Serving's documented predict API:

    POST {server}/v1/models/{model}[/versions/{v}]:predict
         {"signature_name": "soft_mask", "instances": [<image [H][W][3]>, ...]}                (row format)
         {"signature_name": "soft_mask_jpeg", "instances": [{"b64": "<base64 JPEG>"}, ...]}
         {"signature_name": "style_transfer", "inputs": {"images": [...], "target_domain": [...]}}   (columnar)
    GET  {server}/v1/models/{model}                                                           (status)
    POST {server}/v1/search/{index} {"features": [[...]], "k": 10}    (the stand-in server's gallery search)

gRPC (`GrpcClient`) uses `tensorflow_serving.apis` PredictionService when `grpc` and
`tensorflow-serving-api` are importable (port 8500 by default).

Errors are specific: `ServerUnreachableError` (connection refused, DNS, timeout), `ServingHTTPError`
(HTTP status + TF Serving's {"error": ...} text), `BadResponseError` (missing outputs, wrong shapes or
types); client-side input checks raise `errors.ArgumentError` (a ValueError) naming the input. All of
them are `errors.UserError`s, so `serving_client` reports them in one line. The command-line job (image
files in, PNGs or features out) is `client_job`.
"""

import base64
import json
import socket
import urllib.error
import urllib.request

import numpy as np

from bgshift_tf.core import errors

GENERATOR_OUTPUT = "images_uint8"
EMBEDDER_OUTPUT = "features"
# Signature -> (input kind, output checked by the typed helpers).
SIGNATURES = {
    "soft_mask": ("images", GENERATOR_OUTPUT),
    "style_transfer": ("images", GENERATOR_OUTPUT),
    "soft_mask_jpeg": ("bytes", GENERATOR_OUTPUT),
    "embed": ("images", EMBEDDER_OUTPUT),
    "embed_jpeg": ("bytes", EMBEDDER_OUTPUT),
}


class ServingError(errors.UserError, RuntimeError):
    """Base class of the client's errors."""


class ServerUnreachableError(ServingError):
    """The server could not be reached (connection refused, unknown host, timeout)."""


class ServingHTTPError(ServingError):
    """The server answered with an HTTP error; `.status` and `.message` (TF Serving's "error" text)."""

    def __init__(self, url, status, message):
        super().__init__(f"{url} answered HTTP {status}: {message}")
        self.status, self.message = status, message


class BadResponseError(ServingError):
    """The server answered 200 but the body is not what the signature promises."""


# === Input helpers ===


def check_images(images, name="images"):
    """Returns `images` as uint8 [N, H, W, 3], or raises ValueError naming `name` and echoing shape/dtype."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise errors.ArgumentError(f"`{name}` must be uint8 pixels in [0, 255]. Received dtype={images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise errors.ArgumentError(
            f"`{name}` must have shape [N, H, W, 3] with N, H, W >= 1. Received shape={images.shape}")
    return images


def _json_inputs(inputs):
    """{name: np.ndarray | list of bytes} -> {name: JSON-able column}."""
    columns = {}
    for key, value in inputs.items():
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, bytearray)):
            columns[key] = [{"b64": base64.b64encode(bytes(v)).decode("ascii")} for v in value]
        else:
            columns[key] = np.asarray(value).tolist()
    return columns


def _check_output(outputs, name, batch_size, rank, dtype, value_range=None):
    """Returns outputs[name] as `dtype` after checking presence, rank, batch and range (BadResponseError)."""
    if name not in outputs:
        raise BadResponseError(f"The response has no output {name!r}; received outputs {sorted(outputs)}")
    try:
        array = np.asarray(outputs[name], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise BadResponseError(f"Output {name!r} is not a numeric rectangular array: {error}") from None
    if array.ndim != rank or array.shape[0] != batch_size:
        raise BadResponseError(f"Output {name!r} must have rank {rank} and batch {batch_size}; "
                               f"received shape {array.shape}")
    if value_range is not None and array.size and (array.min() < value_range[0] or array.max() > value_range[1]):
        raise BadResponseError(f"Output {name!r} has values outside {value_range}: "
                               f"[{array.min()}, {array.max()}]")
    return array.astype(dtype)


class _TypedCalls:
    """The signature helpers shared by the REST and gRPC clients (each defines `predict`)."""

    def soft_mask(self, images, validate=True):
        """uint8 [N, H, W, 3] -> soft-mask images uint8 [N, h, w, 3] (trained size)."""
        images = check_images(images) if validate else np.asarray(images)
        outputs = self.predict({"images": images}, "soft_mask")
        return _check_output(outputs, GENERATOR_OUTPUT, len(images), 4, np.uint8, (0, 255))

    def style_transfer(self, images, target_domain, validate=True):
        """uint8 [N, H, W, 3], int [N] -> style-transferred uint8 [N, h, w, 3]."""
        images = check_images(images) if validate else np.asarray(images)
        target_domain = np.asarray(target_domain)
        if validate and (target_domain.ndim != 1 or len(target_domain) != len(images)):
            raise errors.ArgumentError(f"`target_domain` must be [N] with N = {len(images)} images. "
                                       f"Received shape={target_domain.shape}")
        outputs = self.predict({"images": images, "target_domain": target_domain.astype(np.int32)}, "style_transfer")
        return _check_output(outputs, GENERATOR_OUTPUT, len(images), 4, np.uint8, (0, 255))

    def soft_mask_jpeg(self, image_bytes):
        """list of encoded JPEG/PNG bytes -> soft-mask images uint8 [N, h, w, 3]."""
        outputs = self.predict({"image_bytes": list(image_bytes)}, "soft_mask_jpeg")
        return _check_output(outputs, GENERATOR_OUTPUT, len(image_bytes), 4, np.uint8, (0, 255))

    def embed(self, images, validate=True):
        """uint8 [N, H, W, 3] -> float32 features [N, D]."""
        images = check_images(images) if validate else np.asarray(images)
        return _check_output(self.predict({"images": images}, "embed"), EMBEDDER_OUTPUT, len(images), 2, np.float32)

    def embed_jpeg(self, image_bytes):
        """list of encoded JPEG/PNG bytes -> float32 features [N, D]."""
        outputs = self.predict({"image_bytes": list(image_bytes)}, "embed_jpeg")
        return _check_output(outputs, EMBEDDER_OUTPUT, len(image_bytes), 2, np.float32)


class RestClient(_TypedCalls):
    """TF Serving REST client.

    Args:
        server: base URL, e.g. "http://localhost:8501".
        model_name: the served model's name.
        version: a model version (int) or None for the server's default (latest).
        timeout: seconds per request.
        request_format: "instances" (row) or "inputs" (columnar).
    """

    def __init__(self, server, model_name, version=None, timeout=30.0, request_format="instances"):
        if request_format not in ("instances", "inputs"):
            raise errors.ArgumentError(
                f"`request_format` must be 'instances' or 'inputs'. Received: {request_format!r}")
        self.server, self.model_name, self.version = server.rstrip("/"), model_name, version
        self.timeout, self.request_format = timeout, request_format

    @property
    def model_url(self):
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.server}/v1/models/{self.model_name}{version}"

    def _request(self, url, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise ServingHTTPError(url, error.code, _error_text(error.read())) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise ServerUnreachableError(f"Cannot reach the model server at {url}: {reason} "
                                         f"(timeout {self.timeout} s). Is it running on that host and port?") from None
        try:
            return json.loads(payload)
        except json.JSONDecodeError as error:
            raise BadResponseError(f"{url} answered with a body that is not JSON: {error}: {payload[:200]!r}") from None

    def status(self):
        """The model's version status ({"model_version_status": [...]})."""
        return self._request(self.model_url)

    def predict(self, inputs, signature_name):
        """Sends named inputs to a signature; returns {output_name: nested list/array}.

        Args:
            inputs: {name: np.ndarray or list of bytes (sent as {"b64": ...})}, same first dimension N.
            signature_name: a signature of the served model.
        """
        columns = _json_inputs(inputs)
        if self.request_format == "inputs":
            body = {"signature_name": signature_name, "inputs": columns}
        elif len(columns) == 1:
            body = {"signature_name": signature_name, "instances": next(iter(columns.values()))}
        else:
            batch = len(next(iter(columns.values())))
            body = {"signature_name": signature_name,
                    "instances": [{k: v[i] for k, v in columns.items()} for i in range(batch)]}
        response = self._request(f"{self.model_url}:predict", body)
        return _parse_predict_response(response, SIGNATURES.get(signature_name, (None, None))[1])

    def search(self, index_name, features=None, *, image_bytes=None, k=10):
        """Top-k gallery entries per query from the stand-in server's search endpoint (`search_endpoint`):
        features float [N, D] or a list of encoded JPEG/PNG bytes (embedded by the server's embedder) ->
        [[{"pid", "camera", "path", "distance"}, ...] per query]."""
        if (features is None) == (image_bytes is None):
            raise errors.ArgumentError("search needs exactly one of `features` [N, D] and `image_bytes`.")
        if features is not None:
            body = {"features": np.atleast_2d(np.asarray(features, dtype=np.float64)).tolist(), "k": k}
        else:
            body = {"images_b64": [base64.b64encode(bytes(v)).decode("ascii") for v in image_bytes], "k": k}
        response = self._request(f"{self.server}/v1/search/{index_name}", body)
        if not isinstance(response, dict) or not isinstance(response.get("results"), list):
            raise BadResponseError(f'The search response has no "results" list: {str(response)[:200]}')
        return response["results"]


def _error_text(body):
    """TF Serving's {"error": "..."} text, or the raw body."""
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:500]


def _parse_predict_response(response, single_output_name):
    """{"predictions": ...} or {"outputs": ...} -> {output_name: value}; a bare single output gets the
    signature's known output name."""
    if not isinstance(response, dict) or not ({"predictions", "outputs"} & set(response)):
        raise BadResponseError(f'The response has neither "predictions" nor "outputs": {str(response)[:200]}')
    if "predictions" in response:
        rows = response["predictions"]
        if not isinstance(rows, list):
            raise BadResponseError(f'"predictions" must be a list; received {type(rows).__name__}')
        if rows and all(isinstance(r, dict) for r in rows):
            return {key: [r.get(key) for r in rows] for key in rows[0]}
        return {single_output_name or "output": rows}
    outputs = response["outputs"]
    return outputs if isinstance(outputs, dict) else {single_output_name or "output": outputs}


# === gRPC ===

_NUMPY_TO_TF = {np.dtype(np.float32): 1, np.dtype(np.int32): 3, np.dtype(np.uint8): 4, np.dtype(np.int64): 9}
_TF_TO_NUMPY = {v: k for k, v in _NUMPY_TO_TF.items()}
_DT_STRING = 7


def grpc_available():
    """True when `grpc` and `tensorflow_serving.apis` import."""
    try:
        import grpc  # noqa: F401
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401
    except ImportError:
        return False
    return True


def _to_tensor_proto(value):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, bytearray)):
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(value))])
        return tensor_pb2.TensorProto(dtype=_DT_STRING, tensor_shape=shape, string_val=[bytes(v) for v in value])
    array = np.ascontiguousarray(value)
    if array.dtype not in _NUMPY_TO_TF:
        raise ValueError(f"gRPC inputs must be one of {sorted(str(d) for d in _NUMPY_TO_TF)}; received {array.dtype}")
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape])
    return tensor_pb2.TensorProto(dtype=_NUMPY_TO_TF[array.dtype], tensor_shape=shape, tensor_content=array.tobytes())


def _from_tensor_proto(proto):
    if proto.dtype not in _TF_TO_NUMPY:
        raise BadResponseError(f"Unexpected output dtype enum {proto.dtype}")
    dtype = _TF_TO_NUMPY[proto.dtype]
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = proto.float_val if dtype == np.float32 else proto.int64_val if dtype == np.int64 else proto.int_val
    return np.asarray(values, dtype=dtype).reshape(shape)


class GrpcClient(_TypedCalls):
    """TF Serving gRPC client (PredictionService/Predict); same helpers as RestClient.

    Args:
        server: "host:port" (TF Serving's gRPC port is 8500).
        model_name, version, timeout: as for RestClient.
    """

    def __init__(self, server, model_name, version=None, timeout=30.0):
        if not grpc_available():
            raise ImportError("The gRPC client needs `grpc` and `tensorflow-serving-api`; use RestClient instead.")
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.server, self.model_name, self.version, self.timeout = server, model_name, version, timeout
        self._grpc = grpc
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server))

    def predict(self, inputs, signature_name):
        """Named inputs -> {output_name: np.ndarray} through PredictionService/Predict."""
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = int(self.version)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(_to_tensor_proto(value))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as error:
            code = error.code()
            if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServerUnreachableError(f"Cannot reach the model server at {self.server}: {code.name} "
                                             f"({error.details()})") from None
            raise ServingHTTPError(self.server, code.name, error.details()) from None
        return {key: _from_tensor_proto(proto) for key, proto in response.outputs.items()}
