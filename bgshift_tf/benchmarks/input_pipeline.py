"""Input-pipeline throughput: TFRecord read + JPEG decode + resize + flip + batch, in images/second.

Writes its own TFRecords of noise-and-shapes JPEGs in a temp folder (no dependency on the synthetic
world), then times steady-state batches (after warm-up), per wall second and per CPU second of this
process (the latter times the core count estimates an otherwise idle machine), of:
- `train_256x128`: stored 256x128 -> 256x128 (resize skipped), no masks (the re-ID path);
- `train_128x64_to_256x128`: stored 128x64 (Market-1501's size) -> 256x128 bilinear;
- `train_with_masks`: stored 256x128 with PNG masks, mask decode + nearest resize (the SBSGAN path);
- `eval_256x128`: the evaluation pipeline (exact decoder, stable order).
"""

import os
import tempfile
import time

import numpy as np

from bgshift_tf.data import shards
from bgshift_tf.data.input import make_eval_dataset, make_train_dataset
from bgshift_tf.data.masks import encode_png
from bgshift_tf.data.records import encode_jpeg

IMAGE_SIZE = (256, 128)


def _picture(rng, height, width):
    """Smooth colour noise with a few solid boxes: compresses like a photo more than pure noise."""
    coarse = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    image = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:height, :width]
    image = np.clip(image.astype(int) + rng.integers(-20, 20, size=image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[y : y + height // 3, x : x + width // 3] = rng.integers(0, 256, size=3)
        mask[y : y + height // 3, x : x + width // 3] = 255
    return image, mask


def write_records(out_dir, num_images, size, with_masks, seed=0):
    """`num_images` noise-and-shapes records (split train, 4 shards) in `out_dir`; returns the shard files."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(num_images):
        image, mask = _picture(rng, *size)
        examples.append({
            "image": encode_jpeg(image), "mask": encode_png(mask) if with_masks else b"",
            "has_mask": int(with_masks), "pid": i // 8, "label": i // 8, "camera": 1 + i % 6, "domain": 0,
            "domain_name": "bench", "split": "train", "filename": f"{i:06d}.jpg", "height": size[0], "width": size[1],
        })
    shards.write_shards(examples, out_dir, "bench", "train", num_shards=4)
    return shards.shard_files(out_dir, "train")


def _rate(dataset, warmup, batches):
    """(images per wall second, images per CPU second of this process) over `batches` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    count = 0
    for _ in range(batches):
        count += int(next(iterator)["image"].shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return round(count / wall, 1), round(count / cpu, 1)


def run(quick: bool = False) -> dict:
    """Returns {"<case>": images/second, ..., settings}. quick: tiny sizes, a smoke run only."""
    num_images, batch_size, warmup, batches = (16, 8, 1, 1) if quick else (1024, 64, 5, 40)
    results = {"batch_size": batch_size, "image_size": list(IMAGE_SIZE), "cpus": os.cpu_count(), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        plain = write_records(os.path.join(tmp, "plain"), num_images, IMAGE_SIZE, with_masks=False)
        small = write_records(os.path.join(tmp, "small"), num_images, (128, 64), with_masks=False)
        masked = write_records(os.path.join(tmp, "masked"), num_images, IMAGE_SIZE, with_masks=True)
        train = {"image_size": IMAGE_SIZE, "batch_size": batch_size, "shuffle_buffer": 256}
        cases = {
            "train_256x128": make_train_dataset(plain, **train),
            "train_128x64_to_256x128": make_train_dataset(small, **train),
            "train_with_masks": make_train_dataset(masked, **train),
            "eval_256x128": make_eval_dataset(plain, image_size=IMAGE_SIZE, batch_size=batch_size).repeat(),
        }
        for name, dataset in cases.items():
            per_wall, per_cpu = _rate(dataset, warmup, batches)
            results[f"{name}_images_per_second"] = per_wall
            # Other processes share the cores; CPU-second throughput x cores estimates an idle machine.
            results[f"{name}_images_per_cpu_second"] = per_cpu
    results["target_images_per_second"] = 3000
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
