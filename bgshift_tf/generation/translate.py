"""Translate a dataset's TFRecords with a trained SBSGAN generator (the library behind `generate`).

`translate_dataset(run_dir, in_dir, out_root, ...)` reads every split of the TFRecord folder `in_dir`
in stored order and writes, per requested variant (`data.variants.GENERATED`), a TFRecord folder with the
same splits, shard count, record order and metadata (pid, label, camera, domain, domain_name, split,
filename; the manifest's top-level facts are copied) and new JPEG bytes, in `variants.folder_name`'s folders:

    <out_root>/<dataset>_soft_mask/                  G(I, D̄)                 soft-mask images (SBSGAN)
    <out_root>/<dataset>_style_transfer_to_<domain>/ G(I, D_target_domain)   style transfer to `target_domain`
    <out_root>/<dataset>_hard_mask/                  (I + 1) * M - 1         hard-mask images from the stored masks

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

from bgshift_tf.data import images, schema, shards
from bgshift_tf.data import variants as image_variants
from bgshift_tf.data import input as data_input
from bgshift_tf.data.records import JPEG_QUALITY
from bgshift_tf.training.gan_checkpoint import load_generator


def output_dir(out_root, domain, variant, target=None):
    """The output folder of one variant: `<out_root>/<image_variants.folder_name(domain, variant, target)>`."""
    return os.path.join(out_root, image_variants.folder_name(domain, variant, target))


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


def _write_jpegs(folder, split, filenames, encoded):
    target = os.path.join(folder, "images", images.split_folder(split))
    os.makedirs(target, exist_ok=True)
    for name, data in zip(filenames, encoded):
        path = os.path.join(target, name)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".tmp_", suffix=".jpg")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def _variant_makers(run_dir, wanted, target_index, precision):
    """({variant: batch -> images in [-1, 1]}, image size); the generator is loaded (computing in
    `precision`) only when needed."""
    makers = {image_variants.HARD_MASK: lambda batch: images.hard_mask(batch["pixels"], batch["mask01"])}
    if not {image_variants.SOFT_MASK, image_variants.STYLE_TRANSFER} & set(wanted):
        with open(os.path.join(run_dir, "config.json")) as f:
            return makers, tuple(json.load(f)["generator"]["image_size"])
    generator = load_generator(run_dir, precision)
    soft_mask = tf.function(lambda x: generator.soft_mask(x), reduce_retracing=True)
    style = tf.function(lambda x: generator.style_transfer(x, tf.fill([tf.shape(x)[0]], target_index)),
                        reduce_retracing=True)
    makers[image_variants.SOFT_MASK] = lambda batch: soft_mask(batch["pixels"])
    makers[image_variants.STYLE_TRANSFER] = lambda batch: style(batch["pixels"])
    return makers, tuple(generator.image_size)


# The fields a generated record copies from its source record (image and mask are new, at the output size).
META_FIELDS = tuple(name for name in schema.FIELDS if name not in ("image", "mask"))


def encode_image(pixels_uint8):
    """uint8 [h, w, 3] -> the JPEG bytes of a generated record."""
    return tf.io.encode_jpeg(pixels_uint8, quality=JPEG_QUALITY).numpy()


def encode_mask(mask01, has_mask):
    """The mask of a generated record: PNG of float {0, 1} [h, w, 1] at the output size; b"" without a mask."""
    return tf.io.encode_png(tf.cast(mask01 * 255.0, tf.uint8)).numpy() if has_mask else b""


def generated_record(meta, image_bytes, mask_bytes, image_size):
    """The fields of a generated record: the source's `META_FIELDS`, the new image and mask at `image_size`."""
    return {**meta, "image": image_bytes, "mask": mask_bytes, "height": image_size[0], "width": image_size[1]}


def _translate_split(files, makers, image_size, *, batch_size, split, jpeg_folders, bar):
    """One pass over a split: ({variant: [record fields]}, number of records with a mask); with
    `jpeg_folders` ({variant: output folder}) the JPEGs are also written per batch. Closes `bar`."""
    examples, num_masks = {variant: [] for variant in makers}, 0
    for batch in data_input.make_record_batches(files, image_size=image_size, batch_size=batch_size):
        masks = [encode_mask(m, h) for m, h in zip(batch["mask01"], batch["has_mask"].numpy())]
        meta = {name: batch[name].numpy() for name in META_FIELDS}
        num_masks += int(meta["has_mask"].sum())
        for variant, make in makers.items():
            encoded = [encode_image(x) for x in images.to_uint8(make(batch))]
            examples[variant].extend(generated_record({name: meta[name][i] for name in meta}, data, masks[i], image_size)
                                     for i, data in enumerate(encoded))
            if jpeg_folders:
                _write_jpegs(jpeg_folders[variant], split, [n.decode() for n in meta["filename"]], encoded)
        bar.update(len(masks))
    bar.close()
    return examples, num_masks


def translate_dataset(run_dir, in_dir, out_root, *, variants=image_variants.GENERATED, target_domain=None,
                      splits=None, batch_size=32, jpeg_dirs=False, overwrite=False, verbose=1,
                      precision="float32"):
    """Writes the requested variants of translated TFRecords for every split of `in_dir` (see module doc).

    Args:
        run_dir: SBSGAN run directory (config.json + checkpoints/), read by `load_generator`.
        in_dir: input TFRecord folder (manifest + shards).
        out_root: parent folder of the output folders.
        variants: subset of `data.variants.GENERATED` (soft_mask, style_transfer, hard_mask).
        target_domain: name (from the run's config.json `domains`) or index; required for style_transfer.
        splits: splits to translate (default: all splits of the input manifest).
        batch_size: images per generator call.
        jpeg_dirs: also write JPEG files in the Market-1501 layout.
        overwrite: redo splits that are already complete.
        precision: the generator's compute precision (a `core.precision` setting); the images leave it
            in float32 whatever it is.

    Returns:
        {"outputs": {variant: folder}, "written": {variant: {split: count}},
         "skipped": {variant: {split: reason}}}.
    """
    # 1. Check the arguments and resolve the output folders.
    variants = image_variants.check(variants, allowed=image_variants.GENERATED, what="variants")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    manifest = shards.read_manifest(in_dir)
    dataset = manifest["dataset"]
    target_index, target_name = None, None
    if image_variants.STYLE_TRANSFER in variants:
        if target_domain is None or target_domain == "":
            raise ValueError("`target_domain` is required for the 'style_transfer' output (flag --target_domain)")
        target_index, target_name = resolve_target_domain(run_dir, target_domain)
    outputs = {v: output_dir(out_root, dataset, v, target_name if v == image_variants.STYLE_TRANSFER else None)
               for v in variants}
    splits = list(manifest["splits"]) if splits is None else list(splits)
    missing = sorted(set(splits) - set(manifest["splits"]))
    if missing:
        raise ValueError(f"TFRecord folder {in_dir!r} has no split(s) {missing}; it has {sorted(manifest['splits'])}")

    # 2. The generator (only when a generated variant is asked for) and its compiled calls.
    makers, image_size = _variant_makers(run_dir, variants, target_index, precision)
    facts = {k: v for k, v in manifest.items() if k not in ("splits", "schema_version", "dataset")}
    generated = {"source": os.path.abspath(in_dir), "run_dir": os.path.abspath(run_dir),
                 "target_domain": target_name, "image_size": list(image_size)}
    written, skipped = {v: {} for v in variants}, {v: {} for v in variants}
    for split in splits:
        entry = manifest["splits"][split]
        count = entry["num_examples"]
        todo = [v for v in variants if overwrite or not _is_complete(outputs[v], split, count)]
        for variant in set(variants) - set(todo):
            skipped[variant][split] = "already complete"
        if not todo:
            continue
        # 3. One pass over the split: generator outputs, new JPEG bytes, the same metadata.
        examples, num_masks = _translate_split(
            shards.shard_files(in_dir, split), {v: makers[v] for v in todo}, image_size, batch_size=batch_size,
            split=split, jpeg_folders=outputs if jpeg_dirs else None,
            bar=tqdm(total=count, desc=f"{dataset} {split}", unit="img", disable=not verbose))
        if image_variants.HARD_MASK in todo and num_masks < count:
            todo.remove(image_variants.HARD_MASK)
            skipped[image_variants.HARD_MASK][split] = f"{count - num_masks} of {count} records have no mask"
        # 4. Shards with the input's layout, then the manifest facts.
        for variant in todo:
            shards.write_shards(examples[variant], outputs[variant], dataset, split, max(entry["num_shards"], 1),
                                overwrite=True)
            shards.update_manifest(outputs[variant], {**facts, "generated": {"variant": variant, **generated}})
            written[variant][split] = len(examples[variant])
    return {"outputs": outputs, "written": written, "skipped": skipped}
