import numpy as np
import pytest

from bgshift_tf.data import shards
from bgshift_tf.data.input import make_eval_dataset, make_multi_domain_dataset, make_train_dataset
from bgshift_tf.data.masks import encode_png
from bgshift_tf.data.records import encode_jpeg

H, W = 32, 16


def _half_image(bright_left=True):
    """Bright (230) on one half, dark (20) on the other; the mask marks the bright half."""
    image = np.full((H, W, 3), 20, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    side = slice(0, W // 2) if bright_left else slice(W // 2, W)
    image[:, side] = 230
    mask[:, side] = 255
    return image, mask


def _write(out_dir, n, *, dataset="toy", pid_offset=0, with_mask=lambda i: True, domain=7, num_shards=2, split="train"):
    examples = []
    for i in range(n):
        image, mask = _half_image(bright_left=i % 3 != 0)
        has_mask = with_mask(i)
        examples.append({
            "image": encode_jpeg(image),
            "mask": encode_png(mask) if has_mask else b"",
            "has_mask": int(has_mask),
            "pid": pid_offset + i,
            "label": i,
            "camera": 1 + i % 2,
            "domain": domain,
            "domain_name": dataset,
            "split": split,
            "filename": f"{pid_offset + i:04d}.jpg",
            "height": H,
            "width": W,
        })
    shards.write_shards(examples, out_dir, dataset, split, num_shards)
    return shards.shard_files(out_dir, split)


def _mask_matches_bright_side(batch):
    image, mask = batch["image"].numpy(), batch["mask"].numpy()
    for x, m in zip(image, mask):
        left_bright = x[:, : W // 2].mean() > x[:, W // 2 :].mean()
        left_mask = m[:, : W // 2].mean() > m[:, W // 2 :].mean()
        assert left_bright == left_mask


def test_train_batches_shapes_ranges_and_joint_flip(tmp_path):
    files = _write(str(tmp_path / "d"), 12)
    dataset = make_train_dataset(files, image_size=(H, W), batch_size=8, seed=3, shuffle_buffer=16)
    flipped_seen = set()
    for batch in dataset.take(4):
        assert batch["image"].shape == (8, H, W, 3) and batch["mask"].shape == (8, H, W, 1)
        assert batch["image"].dtype.name == "float32"
        assert -1.0 <= batch["image"].numpy().min() and batch["image"].numpy().max() <= 1.0
        assert set(np.unique(batch["mask"].numpy())) <= {0.0, 1.0}
        for key in ("has_mask", "label", "pid", "camera", "domain"):
            assert batch[key].shape == (8,) and batch[key].dtype.name == "int64"
        assert batch["filename"].dtype.name == "string"
        _mask_matches_bright_side(batch)
        # stored: bright left unless pid % 3 == 0; compare with what came out to see flips
        image = batch["image"].numpy()
        for pid, x in zip(batch["pid"].numpy(), image):
            stored_left = pid % 3 != 0
            flipped_seen.add(bool((x[:, : W // 2].mean() > x[:, W // 2 :].mean()) != stored_left))
    assert flipped_seen == {True, False}


def test_resize_bilinear_image_nearest_mask(tmp_path):
    files = _write(str(tmp_path / "d"), 4, num_shards=1)
    batch = next(iter(make_train_dataset(files, image_size=(64, 32), batch_size=4, flip=False, seed=0)))
    assert batch["image"].shape == (4, 64, 32, 3)
    mask = batch["mask"].numpy()
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask.sum(axis=(1, 2, 3)), [64 * 16] * 4)
    _mask_matches_bright_side(batch)


def test_require_mask_keeps_only_masked_examples(tmp_path):
    files = _write(str(tmp_path / "d"), 10, with_mask=lambda i: i % 2 == 0)
    everything = next(iter(make_train_dataset(files, image_size=(H, W), batch_size=10, repeat=False, seed=0)))
    has = everything["has_mask"].numpy()
    assert sorted(has) == [0] * 5 + [1] * 5
    assert everything["mask"].numpy()[has == 0].max() == 0.0
    masked = make_train_dataset(files, image_size=(H, W), batch_size=5, require_mask=True, repeat=False, seed=0)
    pids = np.concatenate([b["pid"].numpy() for b in masked])
    assert sorted(pids) == [0, 2, 4, 6, 8]
    no_masks = _write(str(tmp_path / "n"), 4, with_mask=lambda i: False)
    manifest = shards.read_manifest(str(tmp_path / "n"))
    manifest["splits"]["train"]["num_with_mask"] = 0  # what build_dataset_tfrecords records
    shards.update_manifest(str(tmp_path / "n"), {"splits": manifest["splits"]})
    with pytest.raises(ValueError, match="no masks"):
        make_train_dataset(no_masks, image_size=(H, W), batch_size=2, require_mask=True)


def test_eval_order_is_stable_and_complete(tmp_path):
    files = _write(str(tmp_path / "d"), 7, num_shards=3, split="query")

    def names():
        return [n for b in make_eval_dataset(files, image_size=(H, W), batch_size=3) for n in b["filename"].numpy()]

    expected = [f"{i:04d}.jpg".encode() for i in range(7)]
    assert names() == expected and names() == expected
    batches = list(make_eval_dataset(files, image_size=(H, W), batch_size=3))
    assert [b["image"].shape[0] for b in batches] == [3, 3, 1]
    assert set(np.concatenate([b["split"].numpy() for b in batches])) == {b"query"}
    for batch in batches:  # never flipped
        for pid, x in zip(batch["pid"].numpy(), batch["image"].numpy()):
            assert (x[:, : W // 2].mean() > x[:, W // 2 :].mean()) == (pid % 3 != 0)


def test_multi_domain_mixes_evenly_with_position_labels(tmp_path):
    dirs = [str(tmp_path / f"dom{k}") for k in range(3)]
    for k, folder in enumerate(dirs):
        _write(folder, 4 + k, dataset=f"dom{k}", pid_offset=100 * k, domain=9)
    dataset = make_multi_domain_dataset(dirs, image_size=(H, W), batch_size=6, seed=0)
    for batch in dataset.take(3):
        domains, pids = batch["domain"].numpy(), batch["pid"].numpy()
        np.testing.assert_array_equal(np.bincount(domains, minlength=3), [2, 2, 2])
        np.testing.assert_array_equal(pids // 100, domains)
        _mask_matches_bright_side(batch)


def test_corrupt_shard_in_pipeline_named_or_skipped(tmp_path):
    files = _write(str(tmp_path / "d"), 8, num_shards=2, split="gallery")
    data = open(files[0], "rb").read()
    open(files[0], "wb").write(data[: len(data) - 10])
    with pytest.raises(shards.CorruptShardError, match="toy-gallery-00000-of-00002"):
        make_eval_dataset(files, image_size=(H, W), batch_size=4)
    skipping = make_eval_dataset(files, image_size=(H, W), batch_size=4, skip_corrupt=True)
    kept = [n for b in skipping for n in b["filename"].numpy()]
    assert kept == [f"{i:04d}.jpg".encode() for i in (0, 1, 2, 4, 5, 6, 7)]
