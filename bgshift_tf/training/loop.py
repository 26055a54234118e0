"""Distribution strategies and the generic custom training loop shared by the GAN and re-ID trainers.

API
---
- `make_strategy(name="default", cpu_replicas=0) -> tf.distribute.Strategy`
  "default" (one device), "mirrored" (all local devices; with `cpu_replicas=N` the CPU is split into N
  logical devices, one replica each), "multi_worker" (MultiWorkerMirroredStrategy from `TF_CONFIG`).
  Call it first thing in the process: logical devices and collectives must be set before TF starts.
- `ScheduledStep(name, fn, every_n=1)`: `fn(per_replica_batch) -> {loss_name: scalar tensor}` runs on each
  replica under `strategy.run` inside a `tf.function`; it must divide per-example losses by the GLOBAL
  batch size, so the loop SUM-reduces the dicts across replicas. The step runs at loop iterations
  `i` (0-based) with `(i + 1) % every_n == 0`: the GAN uses `[ScheduledStep("d", D, 1),
  ScheduledStep("g", G, n_critic)]`, so G updates after every n_critic D updates. The schedule is decided
  in Python, so no optimizer update ever sits inside a `tf.cond`.
- `train_loop(strategy=..., make_dataset=..., steps=[...], total_steps=..., run_dir=..., trackables={...},
  config=None, checkpoint_every=1000, keep_checkpoints=3, summary_every=100, image_every=0,
  image_fn=None, verbose=1) -> dict` runs iterations until `total_steps` and returns a run summary
  `{"start_step", "final_step", "steps_run", "seconds", "steps_per_second", "losses", "checkpoint"}`.
  * `make_dataset(start_step) -> tf.data.Dataset` of GLOBAL batches, repeating forever. It gets the step
    training resumes from so it can reseed its shuffling (we do not replay the iterator position: skipping
    batches would decode them all again). `strategy.experimental_distribute_dataset` splits each batch.
  * `trackables`: the objects to checkpoint by name (models, optimizers, anything trackable). Everything
    is created by the caller under `strategy.scope()`. Keras optimizers are restored lazily when they
    build, so their state survives a resume; their learning rates are logged as `learning_rate/<name>`.
  * Run directory: `<run_dir>/config.json` (`config`, written atomically), `<run_dir>/checkpoints/`
    (tf.train.CheckpointManager, every `checkpoint_every` steps, keep `keep_checkpoints`, and at the end;
    the checkpoint holds `step`, an int64 tf.Variable counting loop iterations), `<run_dir>/logs/`
    (TensorBoard scalars `losses/<name>` every `summary_every` steps and `image_fn() -> {name: images}`
    every `image_every` steps, images float32 in [-1, 1], [H,W,C] or [N,H,W,C]).
  * Resume: an existing checkpoint in `<run_dir>/checkpoints/` is restored first (step, weights and
    optimizer state); training continues to `total_steps`.
  * NaN/Inf guard: every reported loss is checked after each step; a non-finite one raises
    `NonFiniteLossError` naming the step, the step function and the loss term. Nothing is saved after a
    bad step, so the latest checkpoint is the last good state.
  * KeyboardInterrupt or SIGTERM: saves a checkpoint of the current (finite) state under the count of
    completed iterations, then re-raises KeyboardInterrupt. SIGTERM takes effect at the end of the
    iteration that is running (never inside a step or a checkpoint write); Ctrl-C acts at once (an
    interrupt between the D and G step of one iteration keeps that D update, which the resumed run
    repeats once). Under multi-worker training the interrupt save is skipped (saving needs all workers
    and the others may be gone); the periodic checkpoints are the resume points there.
  * Multi-worker: only the chief writes the real checkpoints, config.json and summaries; the other
    workers save into temporary directories (saving has collective ops) that are deleted afterwards.
- `SignalInterrupt(signum)`: the KeyboardInterrupt subclass the loop raises when a signal stopped it.
- `exit_on_interrupt(command)`: context manager for entry points; turns the loop's KeyboardInterrupt into
  a one-line message and exit status 128 + signal number (130 for Ctrl-C, 143 for SIGTERM), no traceback.
- `checkpoint_dir(run_dir)`, `logs_dir(run_dir)`: run-directory helpers (JSON via `bgshift_tf.atomic_io`);
  `write_scalar(tag, value, step)`, `write_images(tag, images, step)`: TensorBoard summaries written with
  core TF ops (the `tensorboard` package, which `tf.summary.scalar` needs, is not installed).
"""

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from bgshift_tf import atomic_io
from tensorflow.core.framework import summary_pb2
from tqdm import tqdm

STRATEGIES = ("default", "mirrored", "multi_worker")


class NonFiniteLossError(RuntimeError):
    """A reported loss became NaN or Inf; the run directory keeps the last good checkpoint."""


@dataclasses.dataclass(frozen=True)
class ScheduledStep:
    """One step function of the loop and how often it runs (every `every_n`-th iteration)."""

    name: str
    fn: Callable
    every_n: int = 1

    def due(self, iteration):
        """True when this step runs at 0-based loop `iteration`."""
        return (iteration + 1) % self.every_n == 0


def checkpoint_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def logs_dir(run_dir):
    return os.path.join(run_dir, "logs")




# === Strategies ===


def _split_cpu(cpu_replicas):
    """Splits the first physical CPU into `cpu_replicas` logical devices (before TF initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    existing = tf.config.get_logical_device_configuration(cpu)
    if existing is not None and len(existing) == cpu_replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
        )
    except RuntimeError as err:
        have = 1 if existing is None else len(existing)
        raise RuntimeError(
            f"`cpu_replicas={cpu_replicas}` needs the CPU split into {cpu_replicas} logical devices, but "
            f"TensorFlow already initialised its devices with {have} logical CPU(s). Call make_strategy "
            f"before any other TensorFlow work in the process."
        ) from err


def make_strategy(name="default", cpu_replicas=0):
    """Returns the tf.distribute strategy `name` ("default" | "mirrored" | "multi_worker").

    `cpu_replicas=N` (N >= 1) first splits the CPU into N logical devices; "mirrored" then runs one
    replica per logical CPU (on a machine with GPUs leave it 0 to mirror over the GPUs).
    "multi_worker" reads the cluster from the `TF_CONFIG` environment variable.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if cpu_replicas < 0:
        raise ValueError(f"`cpu_replicas` must be >= 0. Received: cpu_replicas={cpu_replicas}")
    if cpu_replicas:
        _split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("`strategy='multi_worker'` needs the TF_CONFIG environment variable (cluster "
                             "and task); it is not set.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    # CPU only: one replica per logical CPU, all-reduce through one device (NCCL needs GPUs).
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type is None or task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


# === Loop ===


def _distributed_step(strategy, step):
    """tf.function running `step.fn` on every replica and SUM-reducing its dict of losses."""

    @tf.function
    def run(batch):
        per_replica = strategy.run(step.fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return run


def _check_finite(losses, iteration, step_name, manager):
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        latest = manager.latest_checkpoint or "none (no checkpoint was saved yet)"
        terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise NonFiniteLossError(
            f"Non-finite loss at step {iteration + 1} in step function '{step_name}': {terms}. Training "
            f"stopped without saving; the last good checkpoint is {latest}."
        )


def _main_losses(losses):
    """What the progress bar shows: the totals (`*loss`) and accuracies, else the first four terms."""
    main = {k: v for k, v in losses.items() if k.endswith(("loss", "accuracy"))} or dict(list(losses.items())[:4])
    return {k: f"{v:.3g}" for k, v in main.items()}


def _learning_rates(trackables):
    import keras

    return {name: float(np.asarray(obj.learning_rate)) for name, obj in trackables.items()
            if isinstance(obj, keras.optimizers.Optimizer)}


def _plugin_metadata(plugin_name):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    return metadata.SerializeToString()


# tf.summary.scalar / tf.summary.image live in the tensorboard package, which is not a dependency: we
# write the same records (tensor + plugin metadata) with the core op tf.summary.write, so TensorBoard
# shows them as scalars and images.
_SCALAR_METADATA = _plugin_metadata("scalars")
_IMAGE_METADATA = _plugin_metadata("images")


def write_scalar(tag, value, step):
    """Writes a TensorBoard scalar to the default summary writer."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def write_images(tag, images, step):
    """Writes images float32 in [-1, 1], [H,W,C] or [N,H,W,C] (C = 1 or 3), as a TensorBoard image summary."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 3:
        images = images[None]
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"image summary '{tag}' needs [H,W,C] or [N,H,W,C] with C in (1, 3). "
                         f"Received: shape={images.shape}")
    pixels = tf.image.convert_image_dtype(tf.clip_by_value((images + 1.0) / 2.0, 0.0, 1.0), tf.uint8, saturate=True)
    # TensorBoard's image format: [width, height, png_1, ..., png_N] as strings.
    encoded = [tf.as_string(tf.shape(pixels)[2]), tf.as_string(tf.shape(pixels)[1])]
    encoded += [tf.io.encode_png(image) for image in pixels]
    tf.summary.write(tag, tf.stack(encoded), step=step, metadata=_IMAGE_METADATA)


class SignalInterrupt(KeyboardInterrupt):
    """What `train_loop` raises (after saving) when a signal such as SIGTERM stopped it; `signum` says which."""

    def __init__(self, signum):
        super().__init__(f"signal {signum}")
        self.signum = int(signum)


@contextlib.contextmanager
def exit_on_interrupt(command):
    """Entry points: on KeyboardInterrupt (Ctrl-C, or SIGTERM via `train_loop`) print how to resume, exit 128+signum.

    `train_loop` has saved a checkpoint by then; `command` names the entry point in the message.
    """
    try:
        yield
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", int(signal.SIGINT))  # a plain KeyboardInterrupt is Ctrl-C
        print(f"{command}: interrupted ({str(err) or 'Ctrl-C'}). Checkpoints and finished stages are kept; "
              f"run the same command again to resume.", file=sys.stderr, flush=True)
        sys.exit(128 + signum)


class _DeferredSigterm:
    """Records SIGTERM while the loop runs (main thread only); the loop acts on it between iterations.

    Raising from the signal handler would interrupt whatever runs at that moment (a checkpoint write, a
    TensorFlow call that turns the exception into another error); the loop instead checks `received`
    after each iteration, so it always stops at a state it can save whole.
    """

    def __enter__(self):
        self.received = None
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._record)
        except ValueError:  # not the main thread: leave signal handling alone
            pass
        return self

    def _record(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def train_loop(*, strategy, make_dataset, steps, total_steps, run_dir, trackables, config=None,
               checkpoint_every=1000, keep_checkpoints=3, summary_every=100, image_every=0,
               image_fn=None, verbose=1):
    """Runs `steps` on batches of `make_dataset(start_step)` until `total_steps` iterations (see module doc).

    Returns the run summary dict; raises NonFiniteLossError on a NaN/Inf loss and re-raises
    KeyboardInterrupt (after saving) on Ctrl-C / SIGTERM.
    """
    # 1. Check the arguments and lay out the run directory (real for the chief, temporary for others).
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1. Received: total_steps={total_steps}")
    for flag, value in (("checkpoint_every", checkpoint_every), ("keep_checkpoints", keep_checkpoints),
                        ("summary_every", summary_every)):
        if value < 1:
            raise ValueError(f"`{flag}` must be >= 1. Received: {flag}={value}")
    for step in steps:
        if step.every_n < 1:
            raise ValueError(f"step '{step.name}' must run every n >= 1 iterations. Received: every_n={step.every_n}")
    if "step" in trackables:
        raise ValueError("`trackables` may not use the name 'step': the loop's step counter has it")
    chief = is_chief(strategy)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    ckpt_dir = checkpoint_dir(run_dir) if chief else tempfile.mkdtemp(prefix="bgshift_worker_ckpt_")
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        if config is not None:
            atomic_io.write_json(os.path.join(run_dir, "config.json"), config)
        writer = tf.summary.create_file_writer(logs_dir(run_dir))
    else:
        writer = tf.summary.create_noop_writer()

    # 2. Restore the latest checkpoint, if any (weights, optimizer state and the step counter).
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(step=step_var, **trackables)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=keep_checkpoints)
    real_manager = manager if chief else tf.train.CheckpointManager(checkpoint, checkpoint_dir(run_dir),
                                                                    max_to_keep=keep_checkpoints)
    latest = real_manager.latest_checkpoint
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    start_step = int(step_var.numpy())
    saved_step = start_step if latest else None

    def save(iteration_count):
        nonlocal saved_step
        if saved_step == iteration_count:
            return
        step_var.assign(iteration_count)
        manager.save(checkpoint_number=iteration_count)
        saved_step = iteration_count

    # 3. Build the distributed input and one tf.function per step function.
    dist_dataset = strategy.experimental_distribute_dataset(make_dataset(start_step))
    iterator = iter(dist_dataset)
    compiled = [(step, _distributed_step(strategy, step)) for step in steps]

    # 4. Iterate: run the due steps, guard against NaN/Inf, log, checkpoint.
    losses = {}
    done = start_step
    bar = tqdm(total=total_steps, initial=start_step, disable=not (chief and verbose), unit="step",
               dynamic_ncols=True, mininterval=1.0)
    started = time.perf_counter()
    try:
        with _DeferredSigterm() as sigterm:
            for iteration in range(start_step, total_steps):
                try:
                    batch = next(iterator)
                except (StopIteration, tf.errors.OutOfRangeError) as err:
                    raise ValueError(f"the dataset from `make_dataset` ran out at step {iteration + 1}; it "
                                     f"must repeat forever (`.repeat()`)") from err
                for step, run in compiled:
                    if step.due(iteration):
                        step_losses = {k: float(v) for k, v in run(batch).items()}
                        _check_finite(step_losses, iteration, step.name, real_manager)
                        losses.update(step_losses)
                done = iteration + 1
                with writer.as_default(step=done):
                    if done % summary_every == 0 or done == total_steps:
                        for name, value in losses.items():
                            write_scalar(f"losses/{name}", value, done)
                        for name, value in _learning_rates(trackables).items():
                            write_scalar(f"learning_rate/{name}", value, done)
                    if chief and image_fn and image_every and (done % image_every == 0 or done == total_steps):
                        for name, images in image_fn().items():
                            write_images(name, images, done)
                if done % checkpoint_every == 0:
                    save(done)
                bar.update(1)
                bar.set_postfix(_main_losses(losses), refresh=False)
                if sigterm.received is not None and done < total_steps:
                    raise SignalInterrupt(sigterm.received)
            save(done)
    except KeyboardInterrupt:
        if not multi_worker and done > start_step:
            save(done)
            print(f"Interrupted at step {done}: saved {manager.latest_checkpoint}", flush=True)
        raise
    finally:
        bar.close()
        writer.flush()
        if not chief:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    seconds = time.perf_counter() - started
    return {
        "start_step": start_step,
        "final_step": done,
        "steps_run": done - start_step,
        "seconds": seconds,
        "steps_per_second": (done - start_step) / seconds if seconds > 0 else 0.0,
        "losses": losses,
        "checkpoint": real_manager.latest_checkpoint,
    }
