"""The TF Serving REST predict protocol of the stand-in server (`standin_server`): request bodies checked
and turned into a signature's tensors, outputs turned into the response JSON, and the errors each failure
is answered with.

A request is {"signature_name": ..., "instances": [...]} (row format) or {"signature_name": ..., "inputs": ...}
(columnar); {"b64": "..."} objects become bytes for string inputs, and those bytes must be a JPEG or PNG
image whose header gives at most `max_pixels` pixels (`MAX_IMAGE_PIXELS` by default). Row requests get
{"predictions": ...}, columnar ones {"outputs": ...}; a single-output signature answers with bare values, a
multi-output one with {output_name: value} objects. `BadRequest`, `NotFound` and `HTTPFailure` carry the HTTP
status the server answers with (400, 404, `status`). `parse_request` also decodes the gallery search
endpoint's image queries (`search_endpoint`).
"""

import base64
import io

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 4096 * 4096  # per encoded image; a decoded image of this size is 48 MB of uint8 RGB


class BadRequest(ValueError):
    """A client error: answered with HTTP 400 and {"error": message}."""


class NotFound(LookupError):
    """Unknown model or version: answered with HTTP 404 and {"error": message}."""


class HTTPFailure(Exception):
    """A request answered with `status` (411, 413, 408) and {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


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


def parse_request(body, signature, max_pixels):
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
    inputs, row_format = parse_request(body, signature, max_pixels)
    try:
        outputs = signature(**inputs)
    except tf.errors.InvalidArgumentError as error:
        raise BadRequest(assertion_message(error.message)) from None
    return _format_response(outputs, row_format)


def assertion_message(message):
    """The informative line of a TF error (the assertion text), without the graph-execution boilerplate."""
    for line in message.splitlines():
        if "assertion failed" in line or "Invalid JPEG" in line or "Unknown image" in line:
            return line.strip()
    return message.strip()
