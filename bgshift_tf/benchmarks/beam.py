"""The Beam feature job (`export.beam_jobs`, `python -m bgshift_tf.batch_infer features`) against the
single-process path `evaluate` takes, in images/second, on the same shards and the same model.

`run(quick=False) -> dict`: writes noise-and-shapes TFRecords (`input_pipeline.write_records`, 128x64,
4 shards), exports a randomly initialised small-DenseNet IDE embedder (speed does not depend on training)
and times, one run each after a warm-up pass:
- `single_process`: `evaluation.features.extract_features` over `make_eval_dataset` batches through the
  compiled Keras embed (what `evaluate` does);
- `beam_direct`: `beam_jobs.run_job("features", ...)` on the default in-process runner (one worker), wall
  time of the whole job: pipeline start, SavedModel load, reading, RunInference, writing the feature shards
  and the manifest;
- `beam_direct_2_threads`: the same with `--direct_num_workers=2 --direct_running_mode=multi_threading`.
Each Beam case also reports its ratio to `single_process`. `quick=True`: 64 images, no warm-up job, the
first Beam case only (a smoke run). Without apache-beam (the `[beam]` extra) the
area says so and times the single-process path only.
"""

import os
import tempfile
import time

import tensorflow as tf

from bgshift_tf.benchmarks.input_pipeline import write_records
from bgshift_tf.data.input import make_eval_dataset
from bgshift_tf.data.shards import shard_files
from bgshift_tf.evaluation.features import extract_features
from bgshift_tf.evaluation.run import compiled_embed
from bgshift_tf.export import saved_model as saved_model_lib
from bgshift_tf.models.reid import IDE

IMAGE_SIZE = (128, 64)
BEAM_CASES = {"beam_direct": [],
              "beam_direct_2_threads": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]}


def _single_process_rate(model, files, batch_size):
    """(images/s, images) of the evaluation's feature path; the first pass (tracing) is not timed."""
    embed = compiled_embed(model, two_inputs=False)

    def extract():
        batches = make_eval_dataset(files, image_size=IMAGE_SIZE, batch_size=batch_size)
        return extract_features(batches, lambda batch: embed(batch["image"]), progress=False)

    extract()
    start = time.perf_counter()
    count = len(extract().pids)
    return round(count / (time.perf_counter() - start), 1), count


def run(quick: bool = False) -> dict:
    """Returns {"num_images", "batch_size", "image_size", "single_process_images_per_second",
    "<beam case>_images_per_second", "<beam case>_ratio", ...}."""
    num_images, batch_size = (64, 16) if quick else (2048, 64)
    results = {"num_images": num_images, "batch_size": batch_size, "image_size": list(IMAGE_SIZE),
               "cpus": os.cpu_count(), "quick": quick, "model": "IDE densenet_small, random init"}
    with tempfile.TemporaryDirectory(prefix="bench_beam_") as tmp:
        records = os.path.join(tmp, "records")
        files = write_records(records, num_images, IMAGE_SIZE, with_masks=False)
        model = IDE(num_classes=16, backbone="densenet_small", input_shape=(*IMAGE_SIZE, 3))
        model.embed(tf.zeros([1, *IMAGE_SIZE, 3]), training=False)
        single, count = _single_process_rate(model, files, batch_size)
        results["single_process_images_per_second"] = single
        try:
            from bgshift_tf.export import beam_jobs  # the [beam] extra: optional
        except ImportError as error:
            results["beam_skipped"] = f"apache-beam is not installed ({error}); pip install -e .[beam]"
            return results
        exports = os.path.join(tmp, "exports")
        saved_model_lib.export_embedder(model, exports, model_name="ide_embedder", version=1)
        model_dir = os.path.join(exports, "ide_embedder")
        # Warm-up job: Beam's first pipeline in a process imports its runner modules. Quick: no warm-up, one case.
        if not quick:
            beam_jobs.run_job("features", model=model_dir, in_dir=records, out_dir=os.path.join(tmp, "warm"),
                              splits=["train"], max_batch_size=batch_size)
        for case, args in list(BEAM_CASES.items())[: 1 if quick else None]:
            start = time.perf_counter()
            manifest = beam_jobs.run_job("features", model=model_dir, in_dir=records, out_dir=os.path.join(tmp, case),
                                         splits=["train"], min_batch_size=batch_size, max_batch_size=batch_size,
                                         pipeline_args=args)
            seconds = time.perf_counter() - start
            written = manifest["splits"]["train"]["num_examples"]
            if written != count:
                raise RuntimeError(f"{case} wrote {written} feature records for {count} images")
            results[f"{case}_images_per_second"] = round(count / seconds, 1)
            results[f"{case}_ratio"] = round(count / seconds / single, 3)
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
