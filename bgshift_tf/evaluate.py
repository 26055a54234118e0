"""Evaluates a trained re-ID run (IDE or DA-2S): rank-1/5/10/20, mAP, mINP -> table + metrics JSON.

Usage:
    python -m bgshift_tf.evaluate --run_dir=runs/ide_synmarket \
        --query_tfrecords=tfrecords/synduke --gallery_tfrecords=tfrecords/synduke --out=runs/ide_eval.json

    # DA-2S: stream 1 sees the SBSGAN soft-mask images (TFRecords of the same files, same order).
    python -m bgshift_tf.evaluate --run_dir=runs/da2s_synmarket \
        --query_tfrecords=tfrecords/synduke --gallery_tfrecords=tfrecords/synduke \
        --soft_mask_query_tfrecords=runs/softmask/synduke --soft_mask_gallery_tfrecords=runs/softmask/synduke \
        --distance=cosine --flip_average --rerank

    # CUHK03 classic: query = gallery = the test split, single-gallery-shot CMC.
    python -m bgshift_tf.evaluate --run_dir=... --query_tfrecords=T --gallery_tfrecords=T --mode=cuhk03_sgs

    # CUHK03 classic over its 20 splits (T = the out_dir of a --cuhk03_split=all TFRecord build, holding
    # split_00/ ... split_19/): each split's metrics, then their mean and spread.
    python -m bgshift_tf.evaluate --run_dir=... --query_tfrecords=T --gallery_tfrecords=T --mode=cuhk03_sgs \
        --cuhk03_split=all

    # Against a gallery index (`python -m bgshift_tf.search build`) instead of gallery TFRecords: equal to
    # the dense evaluation for an exact index; an approximate one says how it differs (metrics "index").
    python -m bgshift_tf.evaluate --run_dir=runs/ide_synmarket --query_tfrecords=tfrecords/synduke \
        --index=runs/index/synduke --out=runs/ide_eval_index.json

A TFRecord flag takes a shard folder (its manifest's query / gallery shards) or a comma list of files or
glob patterns. The metric conventions are documented in `bgshift_tf/core/rank.py`, the re-ranking
conventions in `bgshift_tf/evaluation/rerank.py`.
"""

from absl import app, flags

from bgshift_tf.core import errors, flag_checks, precision
from bgshift_tf.core.rank import MODES
from bgshift_tf.evaluation.rerank import CONVENTIONS as RERANK_CONVENTIONS
from bgshift_tf.evaluation.run import evaluate_cuhk03_classic, evaluate_run
from bgshift_tf.evaluation.search import GalleryIndex

_RUN_DIR = flags.DEFINE_string("run_dir", None, "Re-ID training run folder (config.json + checkpoints/).")
_QUERY = flags.DEFINE_string("query_tfrecords", None, "Query TFRecords: shard folder, comma list or glob.")
_GALLERY = flags.DEFINE_string("gallery_tfrecords", None, "Gallery TFRecords: shard folder, comma list or glob "
                               "(or --index).")
_INDEX = flags.DEFINE_string("index", None, "Gallery index folder (python -m bgshift_tf.search build) replacing "
                             "--gallery_tfrecords; its distance is used.")
_SHORTLIST = flags.DEFINE_integer("index_shortlist", 100, "--index approximate: candidates ranked per query.",
                                  lower_bound=1)
_SOFT_QUERY = flags.DEFINE_string(
    "soft_mask_query_tfrecords", None, "DA-2S: soft-mask images of the query files (same order)."
)
_SOFT_GALLERY = flags.DEFINE_string(
    "soft_mask_gallery_tfrecords", None, "DA-2S: soft-mask images of the gallery files (same order)."
)
_DISTANCE = flags.DEFINE_enum("distance", "euclidean", ["euclidean", "cosine"], "Feature distance.")
_FLIP = flags.DEFINE_bool("flip_average", False, "Average each feature with that of the mirrored image.")
_RERANK = flags.DEFINE_bool("rerank", False, "k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")
_RERANK_CONVENTION = flags.DEFINE_enum(
    "rerank_convention", "zhong2017", list(RERANK_CONVENTIONS),
    "zhong2017: as the authors' code (squared distances, strict 2/3 rule); bgshift_v1: this project's first version.",
)
_MODE = flags.DEFINE_enum("mode", "standard", list(MODES), "Metric convention (see core/rank.py).")
_MAX_RANK = flags.DEFINE_integer("max_rank", 50, "Length of the CMC curve written to the JSON.",
                                 lower_bound=1)
_NUM_REPEATS = flags.DEFINE_integer("num_repeats", 10, "cuhk03_sgs: single-gallery-shot samplings.",
                                    lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "cuhk03_sgs: sampling seed.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
_OUT = flags.DEFINE_string("out", None, "Metrics JSON path (default: <run_dir>/metrics.json).")
_CACHE = flags.DEFINE_string(
    "features_cache_dir", None, "Folder caching query/gallery features, reused when inputs match (resume)."
)

_PRECISION = precision.define_flag()

_CUHK03_SPLIT = flags.DEFINE_enum(
    "cuhk03_split", None, ["all"],
    "all: the TFRecord flags name a --cuhk03_split=all build; evaluate its 20 splits, report mean and spread.",
)

flags.mark_flags_as_required(["run_dir", "query_tfrecords"])
flag_checks.input_path("run_dir", "index", kind="dir")
flag_checks.input_path("query_tfrecords", "gallery_tfrecords", "soft_mask_query_tfrecords",
                       "soft_mask_gallery_tfrecords", patterns=True)
flag_checks.output_file("out")
flag_checks.output_dir("features_cache_dir")
flags.register_multi_flags_validator(
    ["gallery_tfrecords", "index"], lambda values: (values["gallery_tfrecords"] is None) != (values["index"] is None),
    message="pass exactly one of --gallery_tfrecords and --index")


def _gallery_index():
    """The --index folder loaded (a UserError naming it when it is not an index), or None."""
    if _INDEX.value is None:
        return None
    if _DISTANCE.present or _RERANK.value or _CUHK03_SPLIT.value:
        raise app.UsageError(f"--index={_INDEX.value} ranks with the index's own distance, without re-ranking or "
                             "--cuhk03_split: drop --distance / --rerank / --cuhk03_split")
    with errors.user_errors(OSError, ValueError):
        return GalleryIndex.load(_INDEX.value)


def main(argv):
    del argv
    settings = dict(
        distance=_DISTANCE.value, flip_average=_FLIP.value, rerank=_RERANK.value, mode=_MODE.value,
        max_rank=_MAX_RANK.value, num_repeats=_NUM_REPEATS.value, seed=_SEED.value, batch_size=_BATCH.value,
        out_path=_OUT.value, features_cache_dir=_CACHE.value, rerank_convention=_RERANK_CONVENTION.value,
        precision=_PRECISION.value,
    )
    if _CUHK03_SPLIT.value != "all":
        evaluate_run(
            _RUN_DIR.value, query_tfrecords=_QUERY.value, gallery_tfrecords=_GALLERY.value,
            soft_mask_query_tfrecords=_SOFT_QUERY.value, soft_mask_gallery_tfrecords=_SOFT_GALLERY.value,
            gallery_index=_gallery_index(), shortlist=_SHORTLIST.value, **settings
        )
        return
    if _GALLERY.value != _QUERY.value or _SOFT_GALLERY.value != _SOFT_QUERY.value:
        raise app.UsageError(
            "--cuhk03_split=all: query = gallery (both flags name the same split_XX/ root). Received: "
            f"--query_tfrecords={_QUERY.value} --gallery_tfrecords={_GALLERY.value} "
            f"--soft_mask_query_tfrecords={_SOFT_QUERY.value} --soft_mask_gallery_tfrecords={_SOFT_GALLERY.value}"
        )
    evaluate_cuhk03_classic(_RUN_DIR.value, tfrecords_root=_QUERY.value, soft_mask_root=_SOFT_QUERY.value, **settings)


if __name__ == "__main__":
    errors.run(main, "evaluate")
