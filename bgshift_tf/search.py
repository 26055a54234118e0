"""Gallery index and search over feature shards (the batch feature job's output) with FAISS.

Usage:
    # An exact index of the gallery features (cosine on L2-normalised features; --distance=euclidean: raw L2):
    python -m bgshift_tf.search build --features=runs/features/synduke --out=runs/index/synduke
    # An approximate index for a large gallery (see BUILD_NOTES, "Gallery search", for the measured choice):
    python -m bgshift_tf.search build --features=F --out=I --kind=ivfpq --nprobe=16 --shortlist=100
    # Top-10 gallery entries of every query (pid, camera, path, distance), the junk rule applied:
    python -m bgshift_tf.search query --index=runs/index/synduke --features=runs/features/synduke \
        --k=10 --exclude_junk --out=runs/index/synduke_top10.json

Kinds and settings: `bgshift_tf/evaluation/search.py`. Score an index with `evaluate --index=...`.
"""

import dataclasses
import json

from absl import app, flags

from bgshift_tf.core import errors, flag_checks
from bgshift_tf.core.distance import METRICS
from bgshift_tf.evaluation import gallery
from bgshift_tf.evaluation.search import KINDS, IndexSettings

COMMANDS = ("build", "query")
_FEATURES = flags.DEFINE_string("features", None, "Feature shard folder (python -m bgshift_tf.batch_infer features).")
_SPLIT = flags.DEFINE_string("split", None, "Split of --features (default: gallery for build, query for query).")
_INDEX = flags.DEFINE_string("index", None, "query: the index folder to search.")
_OUT = flags.DEFINE_string("out", None, "build: the index folder to write; query: the ranked lists JSON (optional).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "build: replace an existing index folder.")
_KIND = flags.DEFINE_enum("kind", "flat", list(KINDS), "build: flat (exact) | hnsw | ivfpq (approximate).")
_DISTANCE = flags.DEFINE_enum("distance", "cosine", list(METRICS), "build: the evaluation's distance.")
_K = flags.DEFINE_integer("k", 10, "query: gallery entries per query.", lower_bound=1)
_EXCLUDE_JUNK = flags.DEFINE_bool("exclude_junk", False, "query: drop gallery items with the query's pid and camera.")
_SETTINGS = {field.name: flags.DEFINE_integer(field.name, field.default, f"build ({field.name}): see IndexSettings.",
                                              lower_bound=0)
             for field in dataclasses.fields(IndexSettings)}
flag_checks.input_path("features", "index", kind="dir")


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m bgshift_tf.search {{{'|'.join(COMMANDS)}}} --flags...; "
                             f"received arguments {argv[1:]}")
    problem = _OUT.value and flag_checks.check_output(_OUT.value, "dir" if argv[1] == "build" else "file")
    if problem:
        raise errors.ArgumentError(f"flag --out={_OUT.value}: {problem}")
    with errors.user_errors(OSError, ValueError):
        if argv[1] == "build":
            if not _FEATURES.value or not _OUT.value:
                raise app.UsageError("build needs --features and --out")
            settings = IndexSettings(**{name: flag.value for name, flag in _SETTINGS.items()})
            result = gallery.build_index(_FEATURES.value, _OUT.value, split=_SPLIT.value or "gallery",
                                         kind=_KIND.value, distance=_DISTANCE.value, settings=settings,
                                         overwrite=_OVERWRITE.value)
            print(json.dumps(result, indent=2))
            return
        if not _FEATURES.value or not _INDEX.value:
            raise app.UsageError("query needs --index and --features")
        result = gallery.query_index(_INDEX.value, _FEATURES.value, split=_SPLIT.value or "query", k=_K.value,
                                     exclude_junk=_EXCLUDE_JUNK.value, out_path=_OUT.value)
    for query in result["queries"]:
        top = ", ".join(f"{r['pid']}/c{r['camera']} {r['distance']:.4f}" for r in query["results"][:5])
        print(f"{query['path']} (pid {query['pid']}, c{query['camera']}): {top}")
    if _OUT.value:
        print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    errors.run(main, "search")
