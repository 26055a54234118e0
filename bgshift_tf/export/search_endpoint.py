"""The stand-in server's gallery search endpoint: a feature or an image in, the top-k gallery entries out.

Served by `standin_server.StandInServer(..., indexes={name: index folder}, embedder=<served model name>)`
(index folders as saved by `evaluation.search.GalleryIndex.save`, e.g. `python -m bgshift_tf.search build`):

    GET  /v1/search/<index>     the index's metadata ({"index", "kind", "distance", "dim", "size", "exact", ...})
    POST /v1/search/<index>     one of these query forms, plus optional "k" (1 .. MAX_K, default 10):
         {"feature": [D floats]}  or  {"features": [[D floats], ...]}        features of the index's embedder
         {"image_b64": "<base64 JPEG/PNG>"}  or  {"images_b64": [...]}       embedded by `embedder`'s embed_jpeg
         {"images": [<uint8 image [H][W][3]>, ...]}                          embedded by `embedder`'s embed

The answer is {"index": <name>, "kind": <flat|hnsw|ivfpq>, "k": k, "results": [[{"pid", "camera", "path",
"distance"}, ...] per query]}, each list sorted by ascending distance (the evaluation's units: the index's
`distance`, exactly re-ranked) and shorter than k only when the gallery is. Images go through the model
endpoint's own decoding and limits (`rest_protocol.parse_request`: JPEG/PNG only, `max_image_pixels`), and
the body through its `max_body_bytes`. Errors have the model endpoint's statuses and an {"error": message}:
    400  not exactly one query form, a feature of the wrong size, non-numbers, NaN/Infinity, an all-zero
         feature under the cosine distance, k not an integer in [1, MAX_K], an image query on a server with
         no embedder (or an embedder whose features do not fit the index), an empty index (0 items)
    404  unknown index                                 413  body or image over the server's limits
"""

import numpy as np
import tensorflow as tf

from bgshift_tf.evaluation.gallery import ranked_lists
from bgshift_tf.evaluation.search import GalleryIndex
from bgshift_tf.export import rest_protocol as protocol

ROUTE_PREFIX = "/v1/search/"
DEFAULT_K = 10
MAX_K = 1000
FEATURE_FORMS = ("feature", "features")
IMAGE_FORMS = {"image_b64": "embed_jpeg", "images_b64": "embed_jpeg", "images": "embed"}


class SearchStore:
    """Loaded gallery indexes by name, and the served model that embeds image queries.

    Args:
        index_paths: {index_name: index folder}; each is loaded at start-up (FileNotFoundError / ValueError
            naming the folder when it is not an index).
        models: the server's `standin_server.ModelStore` (for image queries).
        embedder: name of a served embedder model (its latest version), or None: feature queries only.
    """

    def __init__(self, index_paths, models, embedder=None):
        if embedder is not None:
            models.get(embedder)  # NotFound at start-up, not at the first image query
        self.indexes = {name: GalleryIndex.load(path) for name, path in index_paths.items()}
        self.models, self.embedder = models, embedder

    def get(self, name):
        if name not in self.indexes:
            raise protocol.NotFound(f"Gallery index not found: {name!r} (serving {sorted(self.indexes)})")
        return self.indexes[name]

    def describe(self, name):
        """GET answer: the index's metadata."""
        return {"index": name, **self.get(name).metadata()}

    def search(self, name, body, max_pixels=protocol.MAX_IMAGE_PIXELS):
        """POST answer for one parsed request body (see the module doc); raises BadRequest / NotFound /
        HTTPFailure as the model endpoint does."""
        gallery_index = self.get(name)
        if not isinstance(body, dict):
            raise protocol.BadRequest("The search request body must be a JSON object.")
        k = _check_k(body.get("k", DEFAULT_K))
        forms = sorted(set(body) & {*FEATURE_FORMS, *IMAGE_FORMS})
        unknown = sorted(set(body) - {*FEATURE_FORMS, *IMAGE_FORMS, "k"})
        if len(forms) != 1 or unknown:
            raise protocol.BadRequest(f"A search request needs exactly one of {[*FEATURE_FORMS, *IMAGE_FORMS]} and "
                                      f"optionally 'k'; received keys {sorted(body)}")
        if gallery_index.size == 0:
            raise protocol.BadRequest(f"Gallery index {name!r} is empty (0 items): nothing to search; rebuild it "
                                      "from a non-empty gallery (python -m bgshift_tf.search build)")
        form = forms[0]
        if form in FEATURE_FORMS:
            features = _parse_features(form, body[form], gallery_index.dim, single=form == "feature")
        else:
            features = self._embed(form, body[form], gallery_index, max_pixels)
        try:
            distances, rows = gallery_index.search(features, k)
        except ValueError as error:  # an all-zero feature under the cosine distance
            raise protocol.BadRequest(f"Query {form!r}: {error}") from None
        return {"index": name, "kind": gallery_index.kind, "k": k,
                "results": ranked_lists(gallery_index, distances, rows)}

    def _embed(self, form, value, gallery_index, max_pixels):
        """Image query -> float32 [N, D] features through the embedder's signature (the model endpoint's
        input parsing and limits)."""
        if self.embedder is None:
            raise protocol.BadRequest(f"Query {form!r} needs an embedder model, and this server has none "
                                      "(start it with --embedder=<served model name>); send 'feature(s)' instead.")
        signature_name = IMAGE_FORMS[form]
        if form == "image_b64":
            value = [value]
        if not isinstance(value, list) or not value:
            raise protocol.BadRequest(f"Query {form!r} must be a non-empty list (one entry per image).")
        if signature_name == "embed_jpeg":
            if not all(isinstance(v, str) for v in value):
                raise protocol.BadRequest(f"Query {form!r} must hold base64 strings of JPEG/PNG files.")
            value = [{"b64": v} for v in value]
        _, model = self.models.get(self.embedder)
        signature = model.signatures[signature_name]
        inputs, _ = protocol.parse_request({"instances": value}, signature, max_pixels)
        try:
            features = signature(**inputs)["features"].numpy()
        except tf.errors.InvalidArgumentError as error:
            raise protocol.BadRequest(protocol.assertion_message(error.message)) from None
        if features.shape[1] != gallery_index.dim:
            raise protocol.BadRequest(f"The embedder {self.embedder!r} gives {features.shape[1]}-d features; the "
                                      f"index holds {gallery_index.dim}-d ones (built from another model?)")
        return features


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise protocol.BadRequest(f"'k' must be an integer in [1, {MAX_K}]. Received: k={k!r}")
    return k


def _parse_features(form, value, dim, single):
    """JSON feature(s) -> float32 [N, dim], or BadRequest naming the fault (size, type, non-finite)."""
    rows = [value] if single else value
    expected = f"a list of {dim} numbers" if single else f"a non-empty list of lists of {dim} numbers"
    if not isinstance(rows, list) or not rows or not all(isinstance(row, list) for row in rows):
        raise protocol.BadRequest(f"Query {form!r} must be {expected}.")
    for number, row in enumerate(rows):
        if len(row) != dim:
            where = "" if single else f" row {number}"
            raise protocol.BadRequest(f"Query {form!r}{where} has {len(row)} values; the index holds {dim}-d "
                                      "features")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise protocol.BadRequest(f"Query {form!r} must hold numbers only; row {number} holds "
                                      f"{sorted({type(v).__name__ for v in row})}")
    with np.errstate(over="ignore"):
        features = np.asarray(rows, dtype=np.float64).astype(np.float32)
    if not np.isfinite(features).all():
        bad = np.argwhere(~np.isfinite(features))[0]
        raise protocol.BadRequest(f"Query {form!r} holds NaN/Infinity or a value beyond float32 (first at row "
                                  f"{bad[0]}, column {bad[1]}).")
    return features
