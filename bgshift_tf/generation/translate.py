"""Translate a dataset's TFRecords with a trained SBSGAN generator (the library behind `generate`).

`translate_dataset(run_dir, in_dir, out_root, ...)` reads every split of the TFRecord folder `in_dir`
in stored order and writes, per requested kind, a TFRecord folder with the same splits, shard count,
record order and metadata (pid, label, camera, domain, domain_name, split, filename; the manifest's
top-level facts are copied) and new JPEG bytes:

    <out_root>/<dataset>_softmask/      G(I, D̄)                 soft-mask images (SBSGAN)
    <out_root>/<dataset>_to_<domain>/   G(I, D_target_domain)   style transfer to `target_domain`
    <out_root>/<dataset>_hardmask/      (I + 1) * M - 1         hard-mask images from the stored masks

`<dataset>` is the input manifest's `dataset`. Images are written at the generator's size (the input is
resized bilinearly to it, as the input pipeline does); masks are resized (nearest) to the same size, so
every record stays self-consistent. Hard-mask output needs a mask on every record of a split; splits
without are not written and are listed in the summary. A split whose output folder is already complete (manifest
says so, same record count) is skipped, so an interrupted run resumes; shards are written atomically
by `data.shards.write_shards`. With `jpeg_dirs=True` the images are also written as JPEG files in the
Market-1501 layout under `<output folder>/images/{bounding_box_train,bounding_box_test,query}/`.
"""

import json
import os
import tempfile

import tensorflow as tf
from tqdm import tqdm

from bgshift_tf.data import schema, shards
from bgshift_tf.data.input import to_uint8
from bgshift_tf.data.records import JPEG_QUALITY
from bgshift_tf.training import losses
from bgshift_tf.training.gan import load_generator

KINDS = ("softmask", "style", "hardmask")
SPLIT_FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}


def output_dir(out_root, dataset, kind, target_domain_name=None):
    """The output folder of one kind: `<out_root>/<dataset>_softmask|_to_<domain>|_hardmask`."""
    if kind == "style":
        if not target_domain_name:
            raise ValueError("style output needs a target domain name")
        return os.path.join(out_root, f"{dataset}_to_{target_domain_name}")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
    return os.path.join(out_root, f"{dataset}_{kind}")


def resolve_target_domain(run_dir, target_domain):
    """(index, name) of `target_domain` (a name from the run's config.json `domains`, or an index)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        domains = json.load(f).get("domains") or []
    text = str(target_domain)
    if text in domains:
        return domains.index(text), text
    if text.isdigit() and int(text) < max(len(domains), 1):
        index = int(text)
        return index, domains[index] if domains else f"domain{index}"
    raise ValueError(f"`target_domain` must be one of the run's domains {domains} or an index below "
                     f"{len(domains)}. Received: target_domain={target_domain!r}")


def _is_complete(out_dir, split, num_examples):
    try:
        entry = shards.read_manifest(out_dir)["splits"].get(split)
    except FileNotFoundError:
        return False
    return (entry is not None and entry["num_examples"] == num_examples
            and all(s["complete"] and os.path.isfile(os.path.join(out_dir, s["file"])) for s in entry["shards"]))


def read_records(files, image_size, batch_size):
    """Batches of raw fields plus `pixels` float32 [B,H,W,3] in [-1,1] and `mask01` [B,H,W,1], stored order."""

    def decode(serialized):
        fields = schema.parse_example(serialized)
        image = tf.image.resize(tf.cast(schema.decode_image(fields["image"]), tf.float32), image_size)
        mask = schema.decode_mask(fields["mask"], fields["height"], fields["width"])
        mask = tf.image.resize(mask, image_size, method="nearest")
        return {**fields, "pixels": image / 127.5 - 1.0, "mask01": mask}

    return (tf.data.TFRecordDataset(files).map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size).prefetch(2))


def _write_jpegs(folder, split, filenames, encoded):
    target = os.path.join(folder, "images", SPLIT_FOLDERS.get(split, split))
    os.makedirs(target, exist_ok=True)
    for name, data in zip(filenames, encoded):
        path = os.path.join(target, name)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".tmp_", suffix=".jpg")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def translate_dataset(run_dir, in_dir, out_root, *, kinds=KINDS, target_domain=None, splits=None,
                      batch_size=32, jpeg_dirs=False, overwrite=False, verbose=1):
    """Writes the requested kinds of translated TFRecords for every split of `in_dir` (see module doc).

    Args:
        run_dir: SBSGAN run directory (config.json + checkpoints/), read by `load_generator`.
        in_dir: input TFRecord folder (manifest + shards).
        out_root: parent folder of the output folders.
        kinds: subset of ("softmask", "style", "hardmask").
        target_domain: name (from the run's config.json `domains`) or index; required for "style".
        splits: splits to translate (default: all splits of the input manifest).
        batch_size: images per generator call.
        jpeg_dirs: also write JPEG files in the Market-1501 layout.
        overwrite: redo splits that are already complete.

    Returns:
        {"outputs": {kind: folder}, "written": {kind: {split: count}}, "skipped": {kind: {split: reason}}}.
    """
    # 1. Check the arguments and resolve the output folders.
    kinds = tuple(kinds)
    bad = sorted(set(kinds) - set(KINDS))
    if bad or not kinds:
        raise ValueError(f"`kinds` must be a non-empty subset of {KINDS}. Received: kinds={list(kinds)}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    manifest = shards.read_manifest(in_dir)
    dataset = manifest["dataset"]
    target_index, target_name = None, None
    if "style" in kinds:
        if target_domain is None or target_domain == "":
            raise ValueError("`target_domain` is required for the 'style' output (flag --target_domain)")
        target_index, target_name = resolve_target_domain(run_dir, target_domain)
    outputs = {kind: output_dir(out_root, dataset, kind, target_name) for kind in kinds}
    splits = list(manifest["splits"]) if splits is None else list(splits)
    missing = sorted(set(splits) - set(manifest["splits"]))
    if missing:
        raise ValueError(f"TFRecord folder {in_dir!r} has no split(s) {missing}; it has {sorted(manifest['splits'])}")

    # 2. The generator (only when a generated kind is asked for) and its compiled calls.
    needs_generator = any(kind in kinds for kind in ("softmask", "style"))
    generator = load_generator(run_dir) if needs_generator else None
    if generator is not None:
        image_size = tuple(generator.image_size)
        soft_mask = tf.function(lambda x: generator.soft_mask(x), reduce_retracing=True)
        style = tf.function(lambda x: generator.style_transfer(x, tf.fill([tf.shape(x)[0]], target_index)),
                            reduce_retracing=True)
    else:
        with open(os.path.join(run_dir, "config.json")) as f:
            image_size = tuple(json.load(f)["generator"]["image_size"])
    facts = {k: v for k, v in manifest.items() if k not in ("splits", "schema_version", "dataset")}

    written = {kind: {} for kind in kinds}
    skipped = {kind: {} for kind in kinds}
    for split in splits:
        entry = manifest["splits"][split]
        count, num_shards = entry["num_examples"], max(entry["num_shards"], 1)
        todo = [k for k in kinds if overwrite or not _is_complete(outputs[k], split, count)]
        for kind in set(kinds) - set(todo):
            skipped[kind][split] = "already complete"
        if not todo:
            continue
        # 3. One pass over the split: generator outputs, new JPEG bytes, the same metadata.
        examples = {kind: [] for kind in todo}
        num_masks = 0
        bar = tqdm(total=count, desc=f"{dataset} {split}", unit="img", disable=not verbose)
        for batch in read_records(shards.shard_files(in_dir, split), image_size, batch_size):
            images = {}
            if "softmask" in todo:
                images["softmask"] = soft_mask(batch["pixels"])
            if "style" in todo:
                images["style"] = style(batch["pixels"])
            if "hardmask" in todo:
                images["hardmask"] = losses.hard_mask(batch["pixels"], batch["mask01"])
            masks = [tf.io.encode_png(tf.cast(m * 255.0, tf.uint8)).numpy() if h else b""
                     for m, h in zip(batch["mask01"], batch["has_mask"].numpy())]
            meta = {name: batch[name].numpy() for name in schema.FIELDS if name not in ("image", "mask")}
            num_masks += int(meta["has_mask"].sum())
            for kind, values in images.items():
                encoded = [tf.io.encode_jpeg(image, quality=JPEG_QUALITY).numpy() for image in to_uint8(values)]
                for i, data in enumerate(encoded):
                    fields = {name: meta[name][i] for name in meta}
                    fields.update(image=data, mask=masks[i], height=image_size[0], width=image_size[1])
                    examples[kind].append(fields)
                if jpeg_dirs:
                    _write_jpegs(outputs[kind], split, [n.decode() for n in meta["filename"]], encoded)
            bar.update(len(masks))
        bar.close()
        if "hardmask" in todo and num_masks < count:
            todo.remove("hardmask")
            skipped["hardmask"][split] = f"{count - num_masks} of {count} records have no mask"
        # 4. Shards with the input's layout, then the manifest facts.
        for kind in todo:
            shards.write_shards(examples[kind], outputs[kind], dataset, split, num_shards, overwrite=True)
            shards.update_manifest(outputs[kind], {
                **facts, "generated": {"kind": kind, "source": os.path.abspath(in_dir),
                                       "run_dir": os.path.abspath(run_dir), "target_domain": target_name,
                                       "image_size": list(image_size)}})
            written[kind][split] = len(examples[kind])
    return {"outputs": outputs, "written": written, "skipped": skipped}
