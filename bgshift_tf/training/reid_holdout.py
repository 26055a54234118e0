"""Early stopping of re-ID training on identities held out of the source domain's train split.

With `holdout_ids` = H > 0 (`training.reid`), H training identities (drawn with the run's seed) leave
training: the classifier learns the other N - H (labels renumbered 0..N-H-1) and the held-out images
are a small retrieval test, each identity's first image the query and its other images the gallery
(`core.rank.evaluate_rank`, standard mode: same-camera matches excluded). After every epoch
`EarlyStopping` measures rank-1 there; an improvement saves the model to `<run_dir>/best/` (what
`load_reid_model` restores), and training stops after `patience` epochs without one or at `epochs`.
The curve is kept in `<run_dir>/early_stopping.json` (atomically), so a resumed run continues it.
"""

import json
import os

import numpy as np
import tensorflow as tf

from bgshift_tf.core import atomic_io
from bgshift_tf.core.distance import pairwise_distance
from bgshift_tf.core.rank import evaluate_rank
from bgshift_tf.data import images
from bgshift_tf.data import input as data_input

STATE_FILE = "early_stopping.json"
BEST_FOLDER = "best"


def holdout_labels(labels, num_holdout, seed) -> np.ndarray:
    """The sorted `num_holdout` training labels held out (drawn with `seed`); ValueError naming the flag
    when fewer than 2 identities would be left to train on."""
    unique = np.unique(labels)
    if not 0 < num_holdout <= len(unique) - 2:
        raise ValueError(f"`holdout_ids` (flag --holdout_ids) must be in [1, {len(unique) - 2}] for "
                         f"{len(unique)} training identities. Received: holdout_ids={num_holdout}")
    return np.sort(np.random.default_rng(seed).choice(unique, size=num_holdout, replace=False))


def label_mapping(num_classes, held) -> np.ndarray:
    """int64 [num_classes]: each kept label's new label (0..N-H-1 in order), -1 for the held-out ones."""
    mapping = np.full(num_classes, -1, np.int64)
    kept = np.setdiff1d(np.arange(num_classes), held)
    mapping[kept] = np.arange(len(kept))
    return mapping


def without_holdout(dataset, mapping, batch_size):
    """Training batches of `dataset` without the held-out identities, labels renumbered (`label_mapping`)."""
    table = tf.constant(mapping)
    examples = dataset.unbatch().filter(lambda ex: tf.gather(table, ex["label"]) >= 0)
    examples = examples.map(lambda ex: {**ex, "label": tf.gather(table, ex["label"])})
    return examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def holdout_images(stream_files, held, image_size, hard_mask=False) -> dict:
    """The held-out records of every stream (same record order in each): {"inputs": [float32 [M, H, W, 3]
    per stream], "pid" [M], "camid" [M]}; `hard_mask` masks the (single) stream with the records' masks."""
    inputs, pids, camids = [], None, None
    for files in stream_files:
        pixels, labels, cameras = [], [], []
        for batch in data_input.make_record_batches(files, image_size=image_size, batch_size=256):
            keep = np.isin(batch["label"].numpy(), held)
            image = images.hard_mask(batch["pixels"], batch["mask01"]) if hard_mask else batch["pixels"]
            pixels.append(image.numpy()[keep])
            labels.append(batch["label"].numpy()[keep])
            cameras.append(batch["camera"].numpy()[keep])
        inputs.append(np.concatenate(pixels))
        pids, camids = np.concatenate(labels), np.concatenate(cameras)
    return {"inputs": inputs, "pid": pids, "camid": camids}


def holdout_rank1(embed, data, batch_size=128) -> float:
    """Rank-1 (fraction) on the held-out images: each identity's first image queries the others."""
    count = len(data["pid"])
    features = np.concatenate([embed(*[tf.constant(x[i:i + batch_size]) for x in data["inputs"]]).numpy()
                               for i in range(0, count, batch_size)])
    _, first = np.unique(data["pid"], return_index=True)
    query = np.zeros(count, bool)
    query[first] = True
    distances = pairwise_distance(features[query], features[~query])
    result = evaluate_rank(distances, data["pid"][query], data["pid"][~query], data["camid"][query],
                           data["camid"][~query], max_rank=1)
    return float(result["cmc"][0])


def best_checkpoint(run_dir):
    """The checkpoint prefix of the best model in `<run_dir>/best/`, or None when there is none."""
    prefix = os.path.join(run_dir, BEST_FOLDER, "best")
    return prefix if os.path.isfile(prefix + ".index") else None


class EarlyStopping:
    """`after_iteration` hook of `training.loop.train_loop` (module doc): returns True to stop training.

    State (`<run_dir>/early_stopping.json`): {"curve": [{"epoch", "step", "rank1"}], "best_step",
    "best_rank1", "stopped_step" (None while training), "patience", "min_epochs", "num_holdout_ids"}.
    No stop before `min_epochs` epochs: early in training (before the learning rate decays) the held-out
    rank-1 is noisy, and patience alone once stopped a study run after 3 epochs at rank-1 0.07.
    """

    def __init__(self, run_dir, model, data, *, patience, steps_per_epoch, min_epochs=0):
        self.path = os.path.join(run_dir, STATE_FILE)
        self.best_dir = os.path.join(run_dir, BEST_FOLDER)
        self.model, self.data = model, data
        self.patience, self.steps_per_epoch = int(patience), int(steps_per_epoch)
        self.min_epochs = int(min_epochs)
        two_inputs = len(data["inputs"]) == 2
        self.embed = tf.function(lambda *x: model.embed(x if two_inputs else x[0], training=False),
                                 reduce_retracing=True)
        self.state = {"curve": [], "best_step": None, "best_rank1": None, "stopped_step": None,
                      "patience": self.patience, "min_epochs": self.min_epochs,
                      "num_holdout_ids": int(len(np.unique(data["pid"])))}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.state = json.load(f)

    def __call__(self, done) -> bool:
        if done % self.steps_per_epoch:
            return False
        rank1 = holdout_rank1(self.embed, self.data)
        state = self.state
        state["curve"].append({"epoch": done // self.steps_per_epoch, "step": int(done), "rank1": rank1})
        if state["best_rank1"] is None or rank1 > state["best_rank1"]:
            state["best_rank1"], state["best_step"] = rank1, int(done)
            checkpoint = tf.train.Checkpoint(model=self.model)
            _ = checkpoint.save_counter  # created so that `load_reid_model`'s restore matches every object
            checkpoint.write(os.path.join(self.best_dir, "best"))
        stop = (done >= self.min_epochs * self.steps_per_epoch
                and done - state["best_step"] >= self.patience * self.steps_per_epoch)
        state["stopped_step"] = int(done) if stop else None
        atomic_io.write_json(self.path, state)
        return stop
