"""Re-ID training: step function, schedule, paired DA-2S input, train_reid runs, resume and reload."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.data import input as data_input
from bgshift_tf.data import schema, shards
from bgshift_tf.models import reid as reid_models
from bgshift_tf.training import reid

SIZE = (64, 32)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image(pid, index, shift):
    """A uint8 [64, 32, 3] image: left half in the identity's colour, right half dark (asymmetric)."""
    rng = np.random.default_rng(100 * pid + index)
    image = rng.integers(0, 40, (*SIZE, 3), dtype=np.uint8)
    image[:, : SIZE[1] // 2] = np.array([60 * pid % 256, 90 * pid % 256, 200 - 30 * pid]) + shift
    return image


def _write_records(folder, num_ids=4, per_id=3, shift=0, label=None, rename=None, num_shards=2):
    examples = []
    for pid in range(num_ids):
        for index in range(per_id):
            name = f"{pid:04d}_c1s1_{index:06d}_00.jpg"
            examples.append({
                "image": tf.io.encode_jpeg(_image(pid, index, shift), quality=95).numpy(),
                "mask": b"", "has_mask": 0, "pid": pid, "label": pid if label is None else label,
                "camera": 1, "domain": 0, "domain_name": "toy", "split": "train",
                "filename": rename(name) if rename else name, "height": SIZE[0], "width": SIZE[1],
            })
    shards.write_shards(examples, folder, "toy", "train", num_shards)
    return str(folder)


def _tiny_config(tmp_path, **overrides):
    config = {
        "backbone": "densenet_small", "image_height": SIZE[0], "image_width": SIZE[1],
        "batch_size": 4, "epochs": 1, "learning_rate": 0.01, "decayed_learning_rate": 0.001,
        "shuffle_buffer": 16, "checkpoint_every": 2, "summary_every": 1, "verbose": 0,
        "run_dir": str(tmp_path / "run"),
    }
    config.update(overrides)
    return config


def _batch():
    images = tf.constant(np.stack([_image(p, 0, 0) for p in range(3)] * 2) / 127.5 - 1.0, tf.float32)
    return {"image": images, "label": tf.constant([0, 1, 2, 0, 1, 2], tf.int64)}


def test_train_step_loss_is_cross_entropy_over_the_global_batch():
    # A deterministic linear model (no dropout/BN) so the loss can be computed by hand.
    model = keras.Sequential([keras.layers.Flatten(name="flat"), keras.layers.Dense(3, name="fc")])
    batch = _batch()
    logits = model(batch["image"]).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # Global batch 12 while this replica sees 6: the loss is the CE sum / 12, half the batch mean.
    expected = -log_softmax[np.arange(6), batch["label"].numpy()].sum() / 12
    predicted = (logits.argmax(-1) == batch["label"].numpy()).sum() / 12
    step = tf.function(reid.make_train_step(model, reid.make_optimizer(0.01), global_batch_size=12))
    out = step(batch)
    np.testing.assert_allclose(float(out["loss"]), expected, rtol=1e-5)
    assert float(out["accuracy"]) == pytest.approx(predicted)


def _linear_update(strategy, batch):
    """Weights of a linear classifier after one SGD step on `batch` under `strategy`."""
    with strategy.scope():
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.layers.Flatten(name="flat"), keras.layers.Dense(3, name="fc")])
        model(batch["image"][:1])
        optimizer = reid.make_optimizer(0.5, 0.5, momentum=0.0)
    step = reid.make_train_step(model, optimizer, global_batch_size=6)

    @tf.function
    def run(dist_batch):
        strategy.run(step, args=(dist_batch,))

    dataset = tf.data.Dataset.from_tensors(batch)
    run(next(iter(strategy.experimental_distribute_dataset(dataset))))
    return [w.numpy() for w in model.weights]


def test_two_replicas_and_one_give_the_same_update():
    batch = _batch()
    one = _linear_update(tf.distribute.OneDeviceStrategy("/cpu:0"), batch)
    two = _linear_update(
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()),
        batch,
    )
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_step_overfits_two_batches():
    model = reid_models.IDE(3, backbone="densenet_small", input_shape=(*SIZE, 3))
    batch = _batch()
    flipped = {**batch, "image": tf.reverse(batch["image"], axis=[2])}
    step = tf.function(reid.make_train_step(model, reid.make_optimizer(0.01, 0.01), global_batch_size=6))
    first = float(step(batch)["loss"])
    for _ in range(10):
        step(batch)
        last = step(flipped)
    assert float(last["loss"]) < 0.5 * first
    assert float(last["accuracy"]) == pytest.approx(1.0)


def test_step_schedule_and_its_config():
    optimizer = reid.make_optimizer(0.1, 0.01, decay_step=40, momentum=0.9)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert float(schedule(40)) == pytest.approx(0.1) and float(schedule(41)) == pytest.approx(0.01)
    clone = type(schedule).from_config(schedule.get_config())
    assert float(clone(0)) == pytest.approx(0.1) and float(clone(1000)) == pytest.approx(0.01)
    assert optimizer.get_config()["momentum"] == pytest.approx(0.9)


def test_paired_dataset_flips_both_streams_together(tmp_path):
    first = _write_records(tmp_path / "soft")
    second = _write_records(tmp_path / "style")  # same images: a pair stays identical after flipping
    dataset = data_input.make_paired_train_dataset(
        first, second, image_size=SIZE, batch_size=6, shuffle_buffer=12, seed=3
    )
    flips = set()
    for batch in dataset.take(4):
        np.testing.assert_allclose(batch["stream1"].numpy(), batch["stream2"].numpy())
        # Left half coloured, right half dark: the brighter half tells whether the image was flipped.
        halves = batch["stream1"].numpy().reshape(6, SIZE[0], 2, SIZE[1] // 2, 3).mean(axis=(1, 3, 4))
        flips.update((halves[:, 1] > halves[:, 0]).tolist())
        pids = [int(name.decode()[:4]) for name in batch["filename"].numpy()]
        assert pids == batch["label"].numpy().tolist()
    assert flips == {True, False}
    assert batch["stream1"].shape == (6, *SIZE, 3) and batch["stream1"].dtype == tf.float32


def test_paired_dataset_rejects_mismatched_filenames(tmp_path):
    first = _write_records(tmp_path / "soft")
    second = _write_records(tmp_path / "style", rename=lambda n: n.replace("_00.jpg", "_01.jpg"))
    with pytest.raises(ValueError, match=r"record 0 is '0000_c1s1_000000_00.jpg'.*_01.jpg"):
        data_input.make_paired_train_dataset(first, second, image_size=SIZE, batch_size=4)
    third = _write_records(tmp_path / "three", num_shards=3)
    with pytest.raises(ValueError, match="2 shards.*3"):
        data_input.make_paired_train_dataset(first, third, image_size=SIZE, batch_size=4)


def test_hard_mask_blackens_the_background():
    batch = {"image": tf.constant([[[[0.5, -0.2, 1.0]], [[0.3, 0.3, 0.3]]]]),
             "mask": tf.constant([[[[1.0]], [[0.0]]]])}
    out = reid.apply_hard_mask(batch)["image"].numpy()
    np.testing.assert_allclose(out, [[[[0.5, -0.2, 1.0]], [[-1.0, -1.0, -1.0]]]])


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="learnig_rate"):
        reid.train_reid({"learnig_rate": 0.1})
    with pytest.raises(ValueError, match="stream1_dir"):
        reid.train_reid(_tiny_config(tmp_path, model="da2s"))
    soft = _write_records(tmp_path / "soft")
    run_dir = tmp_path / "other_run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"model_class": "ide", "model": {"num_classes": 4}}))
    with pytest.raises(ValueError, match="holds a re-ID run whose checkpoint .* model_class ide -> da2s"):
        reid.train_reid(_tiny_config(tmp_path, model="da2s", stream1_dir=soft, stream2_dir=soft,
                                     run_dir=str(run_dir)))
    test_dir = _write_records(tmp_path / "query", label=-1)
    with pytest.raises(ValueError, match="label -1"):
        reid.train_reid(_tiny_config(tmp_path, model="ide", train_dir=test_dir))


@pytest.mark.slow
def test_da2s_train_resume_and_reload(tmp_path):
    soft = _write_records(tmp_path / "soft")
    style = _write_records(tmp_path / "style", shift=20)
    config = _tiny_config(tmp_path, model="da2s", stream1_dir=soft, stream2_dir=style, max_steps=2)
    summary = reid.train_reid(config)
    assert summary["num_classes"] == 4 and summary["num_examples"] == 12
    assert summary["steps_per_epoch"] == 3 and (summary["start_step"], summary["final_step"]) == (0, 2)
    assert np.isfinite(summary["losses"]["loss"])
    with open(os.path.join(config["run_dir"], "config.json")) as f:
        saved = json.load(f)
    assert saved["model_class"] == "da2s" and saved["model"]["num_classes"] == 4
    # The entry point with the tiny flagfile (max_steps=3) resumes the run from its step-2 checkpoint.
    command = [sys.executable, "-m", "bgshift_tf.train_reid", "--model=da2s",
               "--flagfile=bgshift_tf/configs/reid_tiny.flags", f"--stream1_dir={soft}",
               f"--stream2_dir={style}", f"--run_dir={config['run_dir']}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tf.train.latest_checkpoint(os.path.join(config["run_dir"], "checkpoints")).endswith("ckpt-3")
    with open(os.path.join(config["run_dir"], "config.json")) as f:
        assert json.load(f)["flags"]["max_steps"] == 3
    model = reid.load_reid_model(config["run_dir"])
    assert isinstance(model, reid_models.DA2S) and model.feature_dim == 256
    keras.utils.set_random_seed(7)
    fresh = reid_models.DA2S.from_config(saved["model"])
    x = tf.zeros([1, *SIZE, 3])
    fresh((x, x))
    trained_kernel = model.stream1.get_layer("conv1_conv").kernel.numpy()
    assert not np.allclose(trained_kernel, fresh.stream1.get_layer("conv1_conv").kernel.numpy())
    # Reloading twice gives the same weights (it is the checkpoint, not a fresh initialisation).
    again = reid.load_reid_model(config["run_dir"])
    np.testing.assert_array_equal(again.stream1.get_layer("conv1_conv").kernel.numpy(), trained_kernel)


def test_load_reid_model_errors_name_the_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        reid.load_reid_model(str(tmp_path))
