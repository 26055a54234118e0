"""A tiny regression trainer on top of `bgshift_tf.training.loop`, shared by tests/test_loop.py.

Run as a script it trains in its own process (for the resume, SIGTERM and multi-worker tests) and writes
`{"summary": ..., "weights": [...], "iterations": ...}` to `--out`:

    python tests/loop_helper.py --run_dir=/tmp/r --total_steps=20 --out=/tmp/r/out.json
"""

import argparse
import json
import os
import time

import numpy as np

GLOBAL_BATCH = 8
FEATURES = 3


def data(num=64, nan_at_batch=-1):
    """A fixed regression set (x [num, 3], y [num, 2]); `nan_at_batch` puts a NaN into that batch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num, FEATURES)).astype("float32")
    y = rng.normal(size=(num, 2)).astype("float32")
    if nan_at_batch >= 0:
        x[(nan_at_batch * GLOBAL_BATCH) % num, 0] = np.nan
    return x, y


def make_dataset_fn(x, y):
    """`make_dataset(start_step)`: the fixed batch sequence from `start_step` on (exact resume)."""
    import tensorflow as tf

    def make_dataset(start_step):
        ds = tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(GLOBAL_BATCH, drop_remainder=True)
        return ds.repeat().skip(start_step)

    return make_dataset


def build(strategy, lr=0.05):
    """A Dense(2) model and its Adam optimizer, created under the strategy's scope."""
    import keras

    with strategy.scope():
        dense = keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(seed=0), name="dense")
        model = keras.Sequential([keras.Input((FEATURES,)), dense], name="reg")
        optimizer = keras.optimizers.Adam(lr)
    return model, optimizer


def make_step(model, optimizer, loss_name="mse"):
    """Per-replica step: per-example squared error summed and divided by the GLOBAL batch size."""
    import tensorflow as tf

    def step(batch):
        # 1. Forward pass and loss over the global batch.
        with tf.GradientTape() as tape:
            per_example = tf.reduce_sum(tf.square(model(batch["x"]) - batch["y"]), axis=-1)
            loss = tf.reduce_sum(per_example) / GLOBAL_BATCH
        # 2. Gradients and one optimizer update (the optimizer all-reduces across replicas).
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {loss_name: loss}

    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--total_steps", type=int, default=20)
    parser.add_argument("--checkpoint_every", type=int, default=5)
    parser.add_argument("--seconds_per_step", type=float, default=0.0)
    parser.add_argument("--strategy", default="default")
    args = parser.parse_args()

    from bgshift_tf.training import loop
    from bgshift_tf.training.strategy import make_strategy

    strategy = make_strategy(args.strategy)
    model, optimizer = build(strategy)
    x, y = data()
    summary = loop.train_loop(
        strategy=strategy, make_dataset=make_dataset_fn(x, y),
        steps=[loop.ScheduledStep("fit", make_step(model, optimizer))], total_steps=args.total_steps,
        run_dir=args.run_dir, trackables={"model": model, "optimizer": optimizer},
        config={"total_steps": args.total_steps}, checkpoint_every=args.checkpoint_every, summary_every=5,
        # The image hook runs on the main thread after every step: a slow one lets tests kill mid-run.
        image_every=1 if args.seconds_per_step else 0, image_fn=lambda: time.sleep(args.seconds_per_step) or {},
        verbose=0)
    out = {"summary": summary, "weights": [np.asarray(w).tolist() for w in model.get_weights()],
           "iterations": int(optimizer.iterations.numpy())}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
