"""Re-ID training (IDE and DA-2S, paper §5.2): data, model, step function, run and reload.

- `train_reid(config) -> dict`: trains `config["model"]` ("ide" | "da2s") with the generic loop of
  `bgshift_tf.training.loop` (checkpoints, resume, NaN guard, TensorBoard, strategies) and returns the
  loop's run summary plus the dataset facts. Keys and defaults: `DEFAULT_CONFIG` (paper settings).
- IDE trains on one image variant, a TFRecord folder (`train_dir`): original, soft-mask or
  style-transferred images, or hard-mask images made on the fly from the records' masks
  (`hard_mask=True`: masked = (x + 1) * m - 1).
- DA-2S trains on (soft-mask, style-transferred) pairs from two TFRecord folders (`stream1_dir`,
  `stream2_dir`) that the generator wrote from the same source: same shard layout, same record order,
  same `filename`s. `data.input.make_paired_train_dataset` zips the raw records in stored order, checks once up front
  (and again per record) that the file names match, then shuffles the small encoded pairs, decodes both
  and flips both images of a pair together.
- Loss: softmax cross-entropy per example, summed and divided by the GLOBAL batch size (so 1 and N
  replicas give the same update); SGD momentum 0.9; learning rate 0.1, then 0.01 after epoch 40.
- Early stopping (`holdout_ids` > 0 with `patience` > 0; `training.reid_holdout`): that many source
  identities leave training and serve as a small retrieval test after every epoch; training stops after
  `patience` epochs without a better rank-1 there, but not before `min_epochs` (or at `epochs`), the best
  model kept in `<run_dir>/best/` and the curve returned as the summary's "curve".
- `load_reid_model(run_dir) -> IDE | DA2S`: rebuilds the model from `<run_dir>/config.json` and restores
  the best checkpoint of an early-stopped run, else the latest one.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from bgshift_tf.core import config_flags, errors
from bgshift_tf.core.precision import policy_scope, wrap_optimizer
from bgshift_tf.data import input as data_input
from bgshift_tf.data import images, shards
from bgshift_tf.models.reid import DA2S, IDE
from bgshift_tf.training import loop, reid_holdout
from bgshift_tf.training.strategy import make_strategy

MODEL_CLASSES = {"ide": IDE, "da2s": DA2S}

DEFAULT_CONFIG = {
    "model": "ide",  # "ide" | "da2s"
    "train_dir": "",  # IDE: TFRecord folder of the image variant to train on
    "hard_mask": False,  # IDE: multiply the images by the records' body masks
    "stream1_dir": "",  # DA-2S: soft-mask TFRecord folder
    "stream2_dir": "",  # DA-2S: style-transferred TFRecord folder (same file names)
    "split": "train",
    "backbone": "densenet121",  # "densenet121" | "densenet_small"
    "backbone_weights": "none",  # "imagenet" | "none" | path to a .h5 file
    "use_se": True,
    "use_isdc": True,
    "isdc_se": False,  # DA-2S: an SE block on every ISDC output (Table 3 "ISDC-SE"); needs use_isdc
    "image_height": 256,
    "image_width": 128,
    "batch_size": 50,  # global batch size
    "epochs": 60,
    "max_steps": 0,  # > 0: stop after this many steps instead of `epochs` (demo, tests)
    "holdout_ids": 0,  # > 0: identities held out of training for early stopping (training.reid_holdout)
    "patience": 0,  # with holdout_ids: epochs without a better held-out rank-1 before stopping
    "min_epochs": 0,  # with holdout_ids: early stopping never stops before this many epochs
    "learning_rate": 0.1,
    "decayed_learning_rate": 0.01,
    "lr_decay_epoch": 40,
    "momentum": 0.9,
    "shuffle_buffer": 2048,
    "seed": 0,
    "run_dir": "",  # "" -> runs/reid_<model>
    "precision": "float32",  # auto | float32 | mixed_bfloat16 | mixed_float16 (core.precision)
    "strategy": "default",  # "default" | "mirrored" | "multi_worker"
    "cpu_replicas": 0,
    "intra_op_threads": 0,  # TF thread pools (0 = TF's default; training.strategy.configure_threads)
    "inter_op_threads": 0,
    "checkpoint_every": 500,
    "keep_checkpoints": 3,
    "summary_every": 50,
    "verbose": 1,
}


# === Data ===


def check_training_labels(labels, source):
    """Labels must be 0..N-1 (train split): returns N, or raises naming `source` and the bad values."""
    if labels.size == 0:
        raise ValueError(f"no training records in {source}")
    if labels.min() < 0:
        raise ValueError(
            f"{source} has records with label {int(labels.min())}; re-ID training needs the train split "
            "(labels 0..N-1)"
        )
    return int(labels.max()) + 1


def apply_hard_mask(batch):
    """Hard-mask variant of an input batch: image = (image + 1) * mask - 1 (black background)."""
    return {**batch, "image": images.hard_mask(batch["image"], batch["mask"])}


# === Model, optimizer, step ===


def build_reid_model(config, num_classes):
    """IDE or DA2S from the config keys (model, backbone, backbone_weights, image size, ablation), built
    under `config["precision"]` (the model keeps that dtype policy: `model.dtype_policy.name`)."""
    kind = config["model"]
    if kind not in MODEL_CLASSES:
        raise ValueError(f'`model` must be "ide" or "da2s". Received: model={kind!r}')
    kwargs = {
        "num_classes": num_classes,
        "backbone": config["backbone"],
        "input_shape": (config["image_height"], config["image_width"], 3),
        "weights": config["backbone_weights"],
    }
    if kind == "da2s":
        kwargs.update(use_se=config["use_se"], use_isdc=config["use_isdc"], isdc_se=config["isdc_se"])
    with policy_scope(config["precision"]):
        return _built(MODEL_CLASSES[kind](**kwargs))


def _built(model):
    """Calls `model` once on zeros so every layer (also those made in `build`) exists, under the current policy."""
    height, width, _ = model.image_shape
    dummy = tf.zeros([1, height, width, 3])
    model((dummy, dummy) if isinstance(model, DA2S) else dummy)
    return model


def model_inputs(model, batch):
    """The model's input from a batch dict: image for IDE, (stream1, stream2) for DA-2S."""
    if isinstance(model, DA2S):
        return (batch["stream1"], batch["stream2"])
    return batch["image"]


def make_optimizer(learning_rate=0.1, decayed_learning_rate=0.01, decay_step=1, momentum=0.9):
    """SGD with momentum and a step schedule: `learning_rate` up to `decay_step`, then the decayed one."""
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries=[int(decay_step)], values=[float(learning_rate), float(decayed_learning_rate)]
    )
    return keras.optimizers.SGD(learning_rate=schedule, momentum=momentum, name="sgd")


def make_train_step(model, optimizer, global_batch_size):
    """Per-replica step `fn(batch) -> {"loss", "accuracy"}`, each already divided by the global batch.

    Summing the returned values over replicas gives the global mean loss and accuracy (the loop's rule).
    """

    def train_step(batch):
        # 1. Pick the model's inputs (one image or a stream pair) and the identity labels.
        inputs, labels = model_inputs(model, batch), batch["label"]
        # 2. Forward in training mode; per-example float32 cross-entropy summed / GLOBAL batch size.
        with tf.GradientTape() as tape:
            logits = tf.cast(model(inputs, training=True), tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.reduce_sum(per_example) / global_batch_size
            scaled = optimizer.scale_loss(loss)
        # 3. Gradients (of the loss-scaled loss under mixed_float16) and the SGD update (the optimizer
        #    unscales them and all-reduces across replicas).
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        # 4. Report the loss and the batch accuracy on the same scale.
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), tf.cast(labels, tf.int64)), tf.float32)
        return {"loss": loss, "accuracy": tf.reduce_sum(correct) / global_batch_size}

    return train_step


# === Run ===


def _merge_config(config):
    merged = config_flags.merge_known(DEFAULT_CONFIG, config, "unknown re-ID config keys")
    merged["run_dir"] = merged["run_dir"] or os.path.join("runs", f"reid_{merged['model']}")
    for key in ("batch_size", "epochs", "image_height", "image_width"):
        if int(merged[key]) < 1:
            raise ValueError(f"`{key}` must be >= 1. Received: {key}={merged[key]}")
    if (int(merged["holdout_ids"]) > 0) != (int(merged["patience"]) > 0):
        raise ValueError("early stopping needs both --holdout_ids and --patience > 0 (or neither). Received: "
                         f"holdout_ids={merged['holdout_ids']}, patience={merged['patience']}")
    if int(merged["min_epochs"]) > int(merged["epochs"]):
        raise ValueError(f"`min_epochs` must be <= `epochs`. Received: min_epochs={merged['min_epochs']}, "
                         f"epochs={merged['epochs']}")
    return merged


def _training_data(config):
    """Facts about the training set and a `make_dataset(start_step)` for the loop."""
    image_size = (config["image_height"], config["image_width"])
    common = {"image_size": image_size, "batch_size": config["batch_size"],
              "shuffle_buffer": config["shuffle_buffer"]}
    if config["model"] == "da2s":
        if not config["stream1_dir"] or not config["stream2_dir"]:
            raise ValueError(
                "DA-2S needs --stream1_dir (soft-mask records) and --stream2_dir (style-transferred records). "
                f"Received: stream1_dir={config['stream1_dir']!r}, stream2_dir={config['stream2_dir']!r}"
            )
        files1 = shards.shard_files(config["stream1_dir"], config["split"])
        files2 = shards.shard_files(config["stream2_dir"], config["split"])
        labels = data_input.check_paired_files(files1, files2, config["stream1_dir"], config["stream2_dir"])
        source = f"{config['stream1_dir']!r}"

        def make_dataset(start_step):
            return data_input.make_paired_train_dataset(
                config["stream1_dir"], config["stream2_dir"], split=config["split"],
                seed=config["seed"] + start_step, check=False, **common,
            )
    else:
        if not config["train_dir"]:
            raise ValueError("IDE needs --train_dir (a TFRecord folder). Received: train_dir=''")
        files = shards.shard_files(config["train_dir"], config["split"])
        _, labels = data_input.scan_records(files)
        source = f"{config['train_dir']!r}"

        def make_dataset(start_step):
            dataset = data_input.make_train_dataset(
                files, seed=config["seed"] + start_step, require_mask=config["hard_mask"], **common
            )
            return dataset.map(apply_hard_mask) if config["hard_mask"] else dataset

    num_classes = check_training_labels(labels, source)
    if not config["holdout_ids"]:
        return {"num_examples": int(labels.size), "num_classes": num_classes}, make_dataset, None
    held = reid_holdout.holdout_labels(labels, int(config["holdout_ids"]), config["seed"])
    mapping = reid_holdout.label_mapping(num_classes, held)
    streams = ([files1, files2] if config["model"] == "da2s" else [files])
    holdout = {"held": held, "stream_files": streams, "hard_mask": config["hard_mask"]}

    def make_kept_dataset(start_step):
        return reid_holdout.without_holdout(make_dataset(start_step), mapping, config["batch_size"])

    facts = {"num_examples": int(np.sum(mapping[labels] >= 0)), "num_classes": num_classes - len(held),
             "holdout_labels": [int(label) for label in held]}
    return facts, make_kept_dataset, holdout


def _check_resumable(run_dir, run_config):
    """A run directory holding another model's checkpoints would fail to restore: say so clearly."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        previous = json.load(f)
    before = {"model_class": previous.get("model_class"), "model": previous.get("model")}
    now = json.loads(json.dumps({"model_class": run_config["model_class"], "model": run_config["model"]}))
    if before != now:
        old, new = _flat(before), _flat(now)
        changed = [f"{key} {old.get(key)} -> {new.get(key)}" for key in sorted(set(old) | set(new))
                   if old.get(key) != new.get(key)]
        raise errors.ArgumentError(
            f"--run_dir={run_dir!r} holds a re-ID run whose checkpoint ({path}) this run cannot restore: "
            f"{'; '.join(changed)}. Use the run's own settings, another --run_dir, or delete that one to start fresh."
        )


def _flat(value, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1} (lists stay values)."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}" if prefix else key).items()}


def train_reid(config):
    """Trains IDE or DA-2S as configured (keys of `DEFAULT_CONFIG`); resumes from `run_dir` if present.

    Returns:
      The loop's run summary plus num_examples, num_classes, steps_per_epoch, total_steps.
    """
    # The strategy comes first: splitting the CPU into logical devices must precede other TF work.
    config = _merge_config(config)
    strategy = make_strategy(config["strategy"], config["cpu_replicas"], config["intra_op_threads"],
                             config["inter_op_threads"])
    facts, make_dataset, holdout = _training_data(config)
    steps_per_epoch = facts["num_examples"] // config["batch_size"]
    if steps_per_epoch < 1:
        raise ValueError(
            f"`batch_size`={config['batch_size']} exceeds the {facts['num_examples']} training records"
        )
    total_steps = config["max_steps"] or config["epochs"] * steps_per_epoch
    with strategy.scope():
        model = build_reid_model(config, facts["num_classes"])
        optimizer = wrap_optimizer(make_optimizer(
            config["learning_rate"], config["decayed_learning_rate"],
            decay_step=config["lr_decay_epoch"] * steps_per_epoch, momentum=config["momentum"],
        ), model.dtype_policy.name)
    run_config = {
        "flags": config,
        "model_class": config["model"],
        "precision": model.dtype_policy.name,
        "model": {**model.get_config(), "weights": None},  # the checkpoint holds all weights
        "optimizer": keras.optimizers.serialize(optimizer),
        **facts,
    }
    _check_resumable(config["run_dir"], run_config)
    early = None
    if holdout is not None:
        data = reid_holdout.holdout_images(holdout["stream_files"], holdout["held"],
                                           (config["image_height"], config["image_width"]), holdout["hard_mask"])
        early = reid_holdout.EarlyStopping(config["run_dir"], model, data, patience=config["patience"],
                                           steps_per_epoch=steps_per_epoch, min_epochs=config["min_epochs"])
        total_steps = early.state["stopped_step"] or total_steps  # a stopped run resumed: nothing left to train
    summary = loop.train_loop(
        strategy=strategy,
        make_dataset=make_dataset,
        steps=[loop.ScheduledStep("reid", make_train_step(model, optimizer, config["batch_size"]))],
        total_steps=total_steps,
        run_dir=config["run_dir"],
        trackables={"model": model, "optimizer": optimizer},
        config=run_config,
        checkpoint_every=config["checkpoint_every"],
        keep_checkpoints=config["keep_checkpoints"],
        summary_every=config["summary_every"],
        verbose=config["verbose"],
        after_iteration=early,
    )
    return {**summary, **facts, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "curve": early.state if early else None}


def load_reid_model(run_dir, precision="float32"):
    """Rebuilds the IDE or DA2S of a training run from `<run_dir>/config.json` under `precision` (any
    setting of `core.precision`, whatever the run trained in: checkpoints hold float32 variables) and
    restores its best checkpoint (`<run_dir>/best/`, early stopping) or else its latest one
    (`<run_dir>/checkpoints/`), attribute `model`."""
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No re-ID run config at {config_path!r} (run_dir={run_dir!r}).")
    with open(config_path) as f:
        config = json.load(f)
    kind = config.get("model_class")
    if kind not in MODEL_CLASSES or "model" not in config:
        raise ValueError(
            f"{config_path!r} is not a re-ID run config (model_class={kind!r}, keys {sorted(config)})"
        )
    with policy_scope(precision):
        model = _built(MODEL_CLASSES[kind].from_config(config["model"]))
    latest = reid_holdout.best_checkpoint(run_dir) or tf.train.latest_checkpoint(loop.checkpoint_dir(run_dir))
    if latest is None:
        raise FileNotFoundError(f"No checkpoint in {loop.checkpoint_dir(run_dir)!r} (run_dir={run_dir!r}).")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial().assert_existing_objects_matched()
    return model
