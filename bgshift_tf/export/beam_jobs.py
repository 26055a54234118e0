"""Batch inference on Apache Beam over the exported SavedModels: generation and feature extraction jobs.

    generation  TFRecord shards -> shards of SBSGAN images (soft_mask or style_transfer) + mask, the schema,
                shard layout, record order and manifest of `generation.translate` (`python -m bgshift_tf.generate`)
    features    TFRecord shards -> feature shards (`data.feature_shards`: pid, camera, filename, feature)

Pipeline (one element per record, keyed by (split, shard, position) so the output keeps the stored order):

    input shards --read (TensorFlow's TFRecord reader, one shard per element)--> (key, record)
      --decode (uint8 image as the single-process path prepares it)--> RunInference(KeyedModelHandler(
      SignatureHandler)) batched between `min_batch_size` and `max_batch_size` --> output records
      --GroupByKey(split, shard)--> one shard file per input shard, written under a temporary name and renamed
      (a retried bundle rewrites the same file) --> the manifest, last, atomically, after every shard checked.

Beam's own TensorFlow handler (`apache_beam.ml.inference.tensorflow_inference`) is not used: it imports
tensorflow_hub and loads with `tf.keras.models.load_model`, which under Keras 3 cannot load a TF SavedModel.
`SignatureHandler` loads with `tf.saved_model.load` and calls the export's named signature, as TF Serving does.
Equal to the single-process path by construction: features get `data.input.decode_uint8_image` (what
`evaluate` feeds its model) and the `embed` signature; generation feeds the stored pixels to the uint8
signature, which resizes in float without rounding (as `generate` does), and encodes as `translate` does.

Runner: `DirectRunner` (the default) runs Beam's in-process FnApiRunner, never Prism (Beam's DirectRunner
tries Prism first, which downloads a binary: impossible offline). Any other `runner` name and the pipeline
options go to Beam unchanged (Dataflow, Flink, Spark).

Paths: `model`, `in_dir` and `out_dir` are local file system paths (manifests are read with `shards`, shards and
the manifest renamed into place with `atomic_io`); on a cluster they must be a file system every worker mounts
at the same path. `gs://` URLs are not supported.
"""

import dataclasses
import json
import logging
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from bgshift_tf.core import atomic_io, errors
from bgshift_tf.data import schema, shards
from bgshift_tf.data.input import decode_record, decode_uint8_image
from bgshift_tf.export.saved_model import INFO_FILE
from bgshift_tf.generation import translate

# job -> (export kind, signature, output key)
JOBS = {"soft_mask": ("generator", "soft_mask", "images_uint8"),
        "style_transfer": ("generator", "style_transfer", "images_uint8"),
        "features": ("embedder", "embed", "features")}
DIRECT_RUNNER = "DirectRunner"
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """An exported version folder and its facts (`assets.extra/export_info.json`)."""

    version_dir: str
    info: dict

    @property
    def facts(self):
        """JSON-able model facts for manifests and index metadata: name, version (None unless the folder
        is a numeric TF Serving version), kind, path."""
        version = os.path.basename(self.version_dir)
        return {"name": self.info.get("model_name"), "version": int(version) if version.isdigit() else None,
                "kind": self.info["kind"], "path": os.path.abspath(self.version_dir)}


def resolve_export(path, kind, flag="--model"):
    """The export at `path` (a version folder, or a model folder: its highest version, as TF Serving picks).

    Raises:
      errors.MissingInputError / errors.DataError naming `flag` and the path: no SavedModel there, or one of
      another kind (a generator where an embedder is needed).
    """
    path = os.path.normpath(os.fspath(path)) if path else ""
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = sorted((int(v) for v in os.listdir(path) if v.isdigit()), reverse=True)
        path = os.path.join(path, str(versions[0])) if versions else path
    info_path = os.path.join(path, INFO_FILE)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")) or not os.path.isfile(info_path):
        raise errors.MissingInputError(f"{flag}={path!r}: no exported SavedModel there (saved_model.pb and {INFO_FILE}"
                                       "); export one with `python -m bgshift_tf.export`")
    with open(info_path) as f:
        info = json.load(f)
    if info.get("kind") != kind:
        raise errors.DataError(f"{flag}={path!r} is a {info.get('kind')} export; this job needs the {kind}")
    return ExportedModel(path, info)


class SignatureHandler(ModelHandler):
    """A Beam model handler calling one signature of an exported SavedModel on uint8 images [h, w, 3].

    A batch is split into groups of one image size (the signature resizes inside); `target_domain` is the
    style_transfer signature's second input.
    """

    def __init__(self, version_dir, signature, output_key, *, target_domain=None, min_batch_size=1,
                 max_batch_size=32):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self.version_dir, self.signature, self.output_key = version_dir, signature, output_key
        self.target_domain = target_domain

    def load_model(self):
        return tf.saved_model.load(self.version_dir)

    def run_inference(self, batch, model, inference_args=None):
        function = model.signatures[self.signature]
        outputs = [None] * len(batch)
        shapes = {}
        for position, image in enumerate(batch):
            shapes.setdefault(image.shape, []).append(position)
        for positions in shapes.values():
            inputs = {"images": tf.constant(np.stack([batch[p] for p in positions]))}
            if self.target_domain is not None:
                inputs["target_domain"] = tf.fill([len(positions)], tf.constant(self.target_domain, tf.int32))
            values = function(**inputs)[self.output_key].numpy()
            for row, position in enumerate(positions):
                outputs[position] = values[row]
        return [PredictionResult(image, output) for image, output in zip(batch, outputs)]

    def get_metrics_namespace(self):
        return "bgshift_tf"


def read_shard(element):
    """(split, shard index, path) -> ((split, shard index, position), serialized record) in stored order.

    TensorFlow's reader (CRC-checked; a corrupt shard is a `shards.CorruptShardError` naming it): Beam's
    own TFRecord reader needs a CRC32C package (python-snappy, google-crc32c or crcmod) that the `[beam]`
    extra does not pull in, and fails without one."""
    split, index, path = element
    with shards.naming_corrupt_shards([path]):
        for position, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            yield (split, index, position), record


def prepare_generation(item, image_size):
    """(key, record) -> ((key, output fields but the image), stored uint8 pixels): `translate`'s record."""
    key, record = item
    fields = decode_record(record, image_size)
    meta = {name: fields[name].numpy() for name in translate.META_FIELDS}
    mask = translate.encode_mask(fields["mask01"], int(meta["has_mask"]))
    return (key, translate.generated_record(meta, None, mask, image_size)), schema.decode_image(fields["image"]).numpy()


def prepare_features(item, image_size):
    """(key, record) -> ((key, feature record fields), uint8 [h, w, 3] as `evaluate` feeds its model)."""
    key, record = item
    fields = schema.parse_example(record)
    meta = {name: fields[name].numpy() for name in (*schema.FEATURE_BYTES_FIELDS, *schema.FEATURE_INT_FIELDS)}
    return (key, meta), decode_uint8_image(fields["image"], image_size).numpy()


def generation_output(item):
    ((split, index, position), fields), result = item
    fields = {**fields, "image": translate.encode_image(result.inference)}
    return (split, index), (position, schema.serialize_example(fields))


def features_output(item):
    ((split, index, position), meta), result = item
    return (split, index), (position, schema.serialize_feature_example(meta, result.inference))


def write_shard(path, records):
    """Writes serialized `records` as the TFRecord file `path`: a temporary name, then one rename."""

    def write(tmp_path):
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for record in records:
                writer.write(record)

    return atomic_io.atomic_write(path, write)


class WriteShard(beam.DoFn):
    """((split, shard index), [(position, record)]) -> the shard file, then {"split", "index", "num_examples"}.

    Records go in position order to the input shard's name in `out_dir`; a retried bundle writes the same
    file again (the rename replaces it whole), so no duplicate and no half shard can appear.
    """

    def __init__(self, out_dir, plan):
        self.out_dir, self.plan = out_dir, plan

    def process(self, element):
        (split, index), items = element
        records = [record for _, record in sorted(items, key=lambda item: item[0])]
        path = write_shard(os.path.join(self.out_dir, self.plan[split][index]["file"]), records)
        _LOG.info("wrote %s (%d records)", path, len(records))
        yield {"split": split, "index": index, "num_examples": len(records)}


def shard_plan(manifest, splits):
    """{split: [{"file", "num_examples"}]}: the output shards, named and sized as the input's."""
    return {split: [{"file": s["file"], "num_examples": s["num_examples"]} for s in manifest["splits"][split]["shards"]]
            for split in splits}


def write_manifest(written, *, out_dir, plan, facts):
    """After every shard: checks each shard's count against the input's (writing the empty ones), then writes
    `<out_dir>/manifest.json` atomically. Raises RuntimeError naming a shard whose count differs."""
    counts = {(w["split"], w["index"]): w["num_examples"] for w in written}
    splits = {}
    for split, planned in plan.items():
        for index, shard in enumerate(planned):
            count = counts.get((split, index), 0)
            if count != shard["num_examples"]:
                raise RuntimeError(f"output shard {shard['file']!r} got {count} records, its input has "
                                   f"{shard['num_examples']}: not writing {out_dir}/manifest.json")
            if (split, index) not in counts:
                _LOG.info("wrote %s (0 records)", write_shard(os.path.join(out_dir, shard["file"]), []))
        splits[split] = {"num_shards": len(planned), "num_examples": sum(s["num_examples"] for s in planned),
                         "shards": [{**s, "complete": True} for s in planned]}
    path = atomic_io.write_json(os.path.join(out_dir, shards.MANIFEST_NAME),
                                {**facts, "schema_version": schema.SCHEMA_VERSION, "splits": splits})
    _LOG.info("wrote %s (%d shards)", path, sum(len(planned) for planned in plan.values()))


def make_pipeline(runner=DIRECT_RUNNER, pipeline_args=()):
    """A `beam.Pipeline`: the in-process FnApiRunner for "DirectRunner" (offline, never Prism), else `runner`
    by name with `pipeline_args` (Beam's own flags, e.g. --project, --region, --flink_master) unchanged."""
    options = PipelineOptions(list(pipeline_args))
    if runner == DIRECT_RUNNER:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    options.view_as(StandardOptions).runner = runner
    return beam.Pipeline(options=options)


def _check_output(out_dir, in_dir, overwrite):
    if os.path.abspath(out_dir) == os.path.abspath(in_dir):
        raise errors.ArgumentError(f"--out_dir={out_dir!r} is the input folder; write the output elsewhere")
    manifest = os.path.join(out_dir, shards.MANIFEST_NAME)
    if os.path.exists(manifest):
        if not overwrite:
            raise errors.UserError(f"--out_dir={out_dir!r} already holds a manifest; pass --overwrite to redo it")
        try:  # the old run's shards go too: one of a split not redone would contradict the new manifest
            old = [s["file"] for entry in shards.read_manifest(out_dir)["splits"].values() for s in entry["shards"]]
        except errors.DataError:
            old = []
        os.remove(manifest)  # the folder is incomplete until the new manifest is written, last
        for name in old:
            if os.path.isfile(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    os.makedirs(out_dir, exist_ok=True)


def run_job(job, *, model, in_dir, out_dir, splits=None, target_domain=None, min_batch_size=1, max_batch_size=32,
            overwrite=False, runner=DIRECT_RUNNER, pipeline_args=()):
    """Runs one batch job (`JOBS`: soft_mask, style_transfer, features) over the TFRecord folder `in_dir`.

    Args:
      model: exported model folder or version folder (`resolve_export`); in_dir: input shard folder.
      out_dir: output shard folder (its manifest is written last); splits: default every split of `in_dir`.
      target_domain: style_transfer's target domain index.
      min_batch_size, max_batch_size: RunInference's batch bounds.
      overwrite: redo an output folder that already has a manifest.
      runner, pipeline_args: see `make_pipeline`.

    Returns:
      The output manifest.
    """
    if job not in JOBS:
        raise errors.ArgumentError(f"the job must be one of {sorted(JOBS)}. Received: {job!r}")
    kind, signature, output_key = JOBS[job]
    if not 1 <= min_batch_size <= max_batch_size:
        raise errors.ArgumentError("--min_batch_size and --max_batch_size must satisfy 1 <= min <= max. Received: "
                                   f"min_batch_size={min_batch_size}, max_batch_size={max_batch_size}")
    if target_domain is not None and job != "style_transfer":
        raise errors.ArgumentError(f"--target_domain is for the style_transfer job only; job {job!r} takes none. "
                                   f"Received: target_domain={target_domain!r}")
    export = resolve_export(model, kind)
    if job == "style_transfer" and not (isinstance(target_domain, int) and 0 <= target_domain < export.info["num_domains"]):
        raise errors.ArgumentError(f"--target_domain must be a domain index in [0, {export.info['num_domains']}) for "
                                   f"style_transfer. Received: {target_domain!r}")
    if not out_dir:
        raise errors.ArgumentError("--out_dir is required: the output shard folder")
    in_dir, out_dir = os.path.abspath(os.fspath(in_dir)), os.path.abspath(os.fspath(out_dir))
    manifest = shards.read_manifest(in_dir)
    splits = list(manifest["splits"]) if not splits else list(splits)
    missing = sorted(set(splits) - set(manifest["splits"]))
    if missing:
        raise errors.ArgumentError(f"--splits: {in_dir!r} has no split(s) {missing}; it has {sorted(manifest['splits'])}")
    _check_output(out_dir, in_dir, overwrite)
    plan = shard_plan(manifest, splits)
    image_size = tuple(export.info["image_size"])
    handler = KeyedModelHandler(SignatureHandler(
        export.version_dir, signature, output_key, target_domain=target_domain if job == "style_transfer" else None,
        min_batch_size=min_batch_size, max_batch_size=max_batch_size))
    # Every listed input shard complete and present (a ManifestError naming it if not), in shard order.
    inputs = [(split, index, path) for split in splits for index, path in enumerate(shards.shard_files(in_dir, split))]
    prepare, output = ((prepare_features, features_output) if job == "features" else (prepare_generation, generation_output))
    facts = _manifest_facts(job, manifest, export, in_dir, runner, target_domain)
    with make_pipeline(runner, pipeline_args) as pipeline:
        # Reshuffle: a distributed runner reads the shards on many workers, not all on the one that made the list.
        written = (pipeline | "Shards" >> beam.Create(inputs) | "Spread" >> beam.Reshuffle()
                   | "Read" >> beam.FlatMap(read_shard)
                   | "Decode" >> beam.Map(prepare, image_size) | "Infer" >> RunInference(handler)
                   | "Encode" >> beam.Map(output) | "ByShard" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(WriteShard(out_dir, plan)))
        _ = (written | "AllShards" >> beam.combiners.ToList()
             | "Manifest" >> beam.Map(write_manifest, out_dir=out_dir, plan=plan, facts=facts))
    return shards.read_manifest(out_dir)


def _manifest_facts(job, manifest, export, in_dir, runner, target_domain):
    """The output manifest's top level: as `translate` writes it for generation, feature facts for features."""
    source = {"source": os.path.abspath(in_dir), "model": export.facts, "runner": runner}
    if job == "features":
        return {"dataset": manifest["dataset"], "content": schema.FEATURES_CONTENT,
                "feature_dim": int(export.info["feature_dim"]), **source}
    facts = {k: v for k, v in manifest.items() if k not in ("splits", "schema_version")}
    return {**facts, "generated": {"variant": job, "target_domain": target_domain if job == "style_transfer" else None,
                                   "image_size": list(export.info["image_size"]), **source}}
