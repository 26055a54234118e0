"""Early stopping of re-ID training on held-out source identities (`training.reid_holdout`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.data import shards
from bgshift_tf.models import reid as reid_models
from bgshift_tf.training import reid, reid_holdout

SIZE = (64, 32)
NUM_IDS, PER_ID = 6, 4


def _write_records(folder):
    """NUM_IDS identities x PER_ID images over two cameras, each identity its own colour."""
    examples = []
    for pid in range(NUM_IDS):
        for index in range(PER_ID):
            rng = np.random.default_rng(100 * pid + index)
            image = rng.integers(0, 40, (*SIZE, 3), dtype=np.uint8)
            image[:, : SIZE[1] // 2] = np.array([40 * pid % 256, 90 * pid % 256, 250 - 40 * pid])
            examples.append({
                "image": tf.io.encode_jpeg(image, quality=95).numpy(), "mask": b"", "has_mask": 0, "pid": pid + 1,
                "label": pid, "camera": 1 + index % 2, "domain": 0, "domain_name": "toy", "split": "train",
                "filename": f"{pid + 1:04d}_c{1 + index % 2}s1_{index:06d}_00.jpg", "height": SIZE[0],
                "width": SIZE[1]})
    shards.write_shards(examples, str(folder), "toy", "train", 2)
    return str(folder)


def test_held_out_labels_are_seeded_and_the_rest_renumbered():
    labels = np.repeat(np.arange(10), 3)
    held = reid_holdout.holdout_labels(labels, 3, seed=5)
    assert np.array_equal(held, reid_holdout.holdout_labels(labels, 3, seed=5)) and len(set(held)) == 3
    mapping = reid_holdout.label_mapping(10, held)
    assert (mapping[held] == -1).all() and sorted(mapping[mapping >= 0]) == list(range(7))
    with pytest.raises(ValueError, match="--holdout_ids"):
        reid_holdout.holdout_labels(labels, 9, seed=0)


def test_stops_after_patience_epochs_without_gain_and_keeps_the_best(tmp_path, monkeypatch):
    model = reid_models.IDE(4, backbone="densenet_small", input_shape=(*SIZE, 3))
    model(tf.zeros([1, *SIZE, 3]))
    data = {"inputs": [np.zeros([2, *SIZE, 3], np.float32)], "pid": np.array([1, 1]), "camid": np.array([1, 2])}
    curve = iter([0.2, 0.5, 0.4, 0.45])
    monkeypatch.setattr(reid_holdout, "holdout_rank1", lambda embed, data: next(curve))
    early = reid_holdout.EarlyStopping(str(tmp_path), model, data, patience=2, steps_per_epoch=3)
    stops = {step: early(step) for step in range(1, 13)}
    assert [step for step, stop in stops.items() if stop] == [12]  # epochs 3 and 4 did not beat epoch 2
    with open(tmp_path / reid_holdout.STATE_FILE) as f:
        state = json.load(f)
    assert state["best_step"] == 6 and state["best_rank1"] == 0.5 and state["stopped_step"] == 12
    assert [point["rank1"] for point in state["curve"]] == [0.2, 0.5, 0.4, 0.45]
    assert reid_holdout.best_checkpoint(str(tmp_path)).endswith(os.path.join("best", "best"))
    resumed = reid_holdout.EarlyStopping(str(tmp_path), model, data, patience=2, steps_per_epoch=3)
    assert resumed.state == state  # a resumed run continues the curve


def test_min_epochs_holds_off_a_stop_that_patience_alone_would_make(tmp_path, monkeypatch):
    model = reid_models.IDE(4, backbone="densenet_small", input_shape=(*SIZE, 3))
    model(tf.zeros([1, *SIZE, 3]))
    data = {"inputs": [np.zeros([2, *SIZE, 3], np.float32)], "pid": np.array([1, 1]), "camid": np.array([1, 2])}
    # Best at epoch 1: patience 2 alone stops at epoch 3; min_epochs=5 waits, and a gain at epoch 4 resets it.
    curve = iter([0.5, 0.1, 0.2, 0.6, 0.3, 0.3, 0.3])
    monkeypatch.setattr(reid_holdout, "holdout_rank1", lambda embed, data: next(curve))
    early = reid_holdout.EarlyStopping(str(tmp_path), model, data, patience=2, steps_per_epoch=1, min_epochs=5)
    stops = [epoch for epoch in range(1, 8) if early(epoch)]
    assert stops[0] == 6 and early.state["best_step"] == 4 and early.state["min_epochs"] == 5


@pytest.mark.slow
def test_train_reid_with_early_stopping_trains_on_the_kept_ids(tmp_path):
    folder = _write_records(tmp_path / "records")
    config = {"backbone": "densenet_small", "image_height": SIZE[0], "image_width": SIZE[1], "batch_size": 4,
              "epochs": 3, "learning_rate": 0.01, "decayed_learning_rate": 0.001, "shuffle_buffer": 16,
              "checkpoint_every": 100, "summary_every": 1, "verbose": 0, "run_dir": str(tmp_path / "run"),
              "train_dir": folder, "holdout_ids": 2, "patience": 1}
    summary = reid.train_reid(config)
    assert summary["num_classes"] == NUM_IDS - 2 and summary["num_examples"] == (NUM_IDS - 2) * PER_ID
    curve = summary["curve"]
    assert 1 <= len(curve["curve"]) <= 3 and curve["num_holdout_ids"] == 2
    assert all(0.0 <= point["rank1"] <= 1.0 for point in curve["curve"])
    assert summary["final_step"] == (curve["stopped_step"] or summary["total_steps"])
    best = tf.train.load_checkpoint(reid_holdout.best_checkpoint(config["run_dir"]))
    loaded = reid.load_reid_model(config["run_dir"])
    name = next(n for n in best.get_variable_to_shape_map() if n.startswith("model/") and "kernel" in n)
    # The reloaded model holds the best checkpoint's weights (a kernel of it found among its variables).
    assert any(np.array_equal(best.get_tensor(name), v.numpy()) for v in loaded.weights
               if tuple(v.shape) == tuple(best.get_tensor(name).shape))
    with pytest.raises(ValueError, match="--holdout_ids and --patience"):
        reid.train_reid({**config, "patience": 0})
