"""The generic custom training loop shared by the GAN and re-ID trainers.

Strategies live in `training.strategy`, TensorBoard writing in `training.summaries`, signal handling in
`training.interrupts`; this module is the loop.

API
---
- `ScheduledStep(name, fn, every_n=1, skip_every=0)`: `fn(per_replica_batch) -> {loss_name: scalar tensor}`
  runs on each replica under `strategy.run` inside a `tf.function`; it must divide per-example losses by
  the GLOBAL batch size, so the loop SUM-reduces the dicts across replicas. The step runs at loop
  iterations `i` (0-based) with `(i + 1) % every_n == 0`, except where `(i + 1) % skip_every == 0`: the GAN
  uses `[ScheduledStep("d", D, skip_every=n_critic), ScheduledStep("dg", D_then_G, every_n=n_critic)]`,
  so G updates after every n_critic D updates. The schedule is decided in Python, so no optimizer update
  ever sits inside a `tf.cond`.
- `train_loop(strategy=..., make_dataset=..., steps=[...], total_steps=..., run_dir=..., trackables={...},
  config=None, checkpoint_every=1000, keep_checkpoints=3, summary_every=100, image_every=0,
  image_fn=None, verbose=1, after_iteration=None, steps_per_call=1) -> dict` runs iterations until
  `total_steps` (or until
  `after_iteration(done)`, called after each iteration's checkpointing, returns True: early stopping; the
  state is then saved as at the end) and returns a run summary
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
    completed iterations, then re-raises KeyboardInterrupt (`interrupts.SignalInterrupt` for SIGTERM).
    SIGTERM takes effect at the end of the call that is running (never inside a step or a checkpoint
    write); Ctrl-C acts once the running call returns. The steps of one iteration run in one call, so
    an interrupt never splits them. Under multi-worker training the interrupt save is
    skipped (saving needs all workers and the others may be gone); the periodic checkpoints are the
    resume points there.
  * Multi-worker: only the chief writes the real checkpoints, config.json and summaries; the other
    workers save into temporary directories (saving has collective ops) that are deleted afterwards.
- `checkpoint_dir(run_dir)`, `logs_dir(run_dir)`: run-directory helpers (JSON via `bgshift_tf.core.atomic_io`).
"""

import dataclasses
import functools
import math
import os
import shutil
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bgshift_tf.core import atomic_io
from bgshift_tf.training import interrupts, summaries
from bgshift_tf.training.strategy import is_chief, is_multi_worker


class NonFiniteLossError(RuntimeError):
    """A reported loss became NaN or Inf; the run directory keeps the last good checkpoint."""


@dataclasses.dataclass(frozen=True)
class ScheduledStep:
    """One step function of the loop and how often it runs (every `every_n`-th iteration)."""

    name: str
    fn: Callable
    every_n: int = 1
    skip_every: int = 0

    def due(self, iteration):
        """True when this step runs at 0-based loop `iteration`."""
        count = iteration + 1
        return count % self.every_n == 0 and not (self.skip_every and count % self.skip_every == 0)


def checkpoint_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def logs_dir(run_dir):
    return os.path.join(run_dir, "logs")


def _check_arguments(total_steps, steps, trackables, after_iteration, **every):
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1. Received: total_steps={total_steps}")
    for flag, value in every.items():
        if value < 1:
            raise ValueError(f"`{flag}` must be >= 1. Received: {flag}={value}")
    for step in steps:
        if step.every_n < 1:
            raise ValueError(f"step '{step.name}' must run every n >= 1 iterations. Received: every_n={step.every_n}")
        if step.skip_every < 0:
            raise ValueError(f"step '{step.name}': `skip_every` must be >= 0. Received: {step.skip_every}")
    if every["steps_per_call"] > 1 and after_iteration is not None:
        raise ValueError("`after_iteration` needs every iteration: use steps_per_call=1 with it. Received: "
                         f"steps_per_call={every['steps_per_call']}")
    if "step" in trackables:
        raise ValueError("`trackables` may not use the name 'step': the loop's step counter has it")


class _Checkpoints:
    """The run's checkpoint: the `step` counter plus `trackables`; the chief saves into the run directory,
    other workers into a temporary one (saving has collective ops) that `close` deletes."""

    def __init__(self, run_dir, trackables, keep, chief):
        self.chief = chief
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
        self.real = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir(run_dir), max_to_keep=keep)
        self.directory = checkpoint_dir(run_dir) if chief else tempfile.mkdtemp(prefix="bgshift_worker_ckpt_")
        self.writer = self.real if chief else tf.train.CheckpointManager(self.checkpoint, self.directory, keep)
        self.saved_step = None

    def restore(self):
        """Restores the latest real checkpoint, if any; returns the step to start from."""
        latest = self.real.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.saved_step = int(self.step.numpy())
        return int(self.step.numpy())

    def save(self, iteration_count):
        if self.saved_step == iteration_count:
            return
        self.step.assign(iteration_count)
        self.writer.save(checkpoint_number=iteration_count)
        self.saved_step = iteration_count

    def close(self):
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)


def _distributed_step(strategy, step):
    """tf.function running `step.fn` on every replica and SUM-reducing its dict of losses."""

    @tf.function
    def run(batch):
        per_replica = strategy.run(step.fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return run


def schedule_period(steps):
    """Iterations after which the schedule repeats: the lcm of every step's `every_n` and `skip_every`."""
    return math.lcm(*(n for step in steps for n in (step.every_n, step.skip_every) if n))


class _Calls:
    """Runs a pattern of iterations (a tuple, per iteration, of the indices of its due steps) `repeats`
    times on batches from `iterator`, counting iterations in `counter`.

    A pattern's first call runs eagerly, iteration by iteration (each step one `tf.function` call, which
    builds the optimizers' slots and tells its loss names); later calls run one `tf.function` with a
    `tf.while_loop`. Either returns {"last": the last repeat's losses, "bad_repeat": first repeat with a
    non-finite loss or -1, "bad": that repeat's losses}, each loss keyed (position in the pattern, step
    index, name).
    """

    def __init__(self, strategy, steps, iterator, counter):
        self.runs = [_distributed_step(strategy, step) for step in steps]
        self.iterator, self.counter, self.functions = iterator, counter, {}

    def __call__(self, pattern, repeats):
        if pattern not in self.functions:
            keys, result = self._run_eagerly(pattern, repeats)
            self.functions[pattern] = (keys, tf.function(functools.partial(self._run, pattern, keys)))
            return result
        keys, function = self.functions[pattern]
        out = function(tf.constant(repeats, tf.int64))
        values = {name: dict(zip(keys, (float(v) for v in out[name]))) for name in ("last", "bad")}
        return {**values, "bad_repeat": int(out["bad_repeat"])}

    def _run_eagerly(self, pattern, repeats):
        result = {"bad_repeat": -1, "bad": {}}
        for repeat in range(repeats):
            values = {}
            for j, due in enumerate(pattern):
                batch = next(self.iterator)
                for i in due:
                    values.update({(j, i, k): float(v) for k, v in self.runs[i](batch).items()})
                self.counter.assign_add(1)
            if result["bad_repeat"] < 0 and not all(math.isfinite(v) for v in values.values()):
                result.update(bad_repeat=repeat, bad=values)
            result["last"] = values
        return list(result["last"]), result

    def _run(self, pattern, keys, repeats):
        def body(repeat, bad_repeat, bad, last):
            # 1. The pattern's iterations: a batch each, its due steps on it, then the counter + 1.
            values = {}
            for j, due in enumerate(pattern):
                batch = next(self.iterator)
                for i in due:
                    for name, value in self.runs[i](batch).items():
                        values[(j, i, name)] = tf.cast(value, tf.float32)
                with tf.control_dependencies([v for (vj, _, _), v in values.items() if vj == j]):
                    self.counter.assign_add(1)
            current = [values[key] for key in keys]
            # 2. Remember the first repeat with a non-finite loss.
            first_bad = tf.logical_and(bad_repeat < 0, tf.logical_not(tf.reduce_all(tf.math.is_finite(current))))
            bad = [tf.where(first_bad, c, b) for c, b in zip(current, bad)]
            return repeat + 1, tf.where(first_bad, repeat, bad_repeat), bad, current

        zeros = [tf.zeros([]) for _ in keys]
        _, bad_repeat, bad, last = tf.while_loop(
            lambda repeat, *_: repeat < repeats, body,
            (tf.constant(0, tf.int64), tf.constant(-1, tf.int64), zeros, zeros))
        return {"last": last, "bad_repeat": bad_repeat, "bad": bad}


def _plan(done, steps, steps_per_call, total_steps, every):
    """(pattern, repeats) of the next call from iteration `done` (see the module doc), `every` = the
    boundaries' periods (checkpoint, summary, image; 0 = none)."""
    period = schedule_period(steps)

    def pattern(start, length):
        return tuple(tuple(i for i, step in enumerate(steps) if step.due(it)) for it in range(start, start + length))

    if steps_per_call <= 1 or done % period:
        return pattern(done, 1), 1
    room = min([total_steps - done] + [n - done % n for n in every if n > 0])
    repeats = min(steps_per_call, room) // period
    return (pattern(done, period), repeats) if repeats >= 1 else (pattern(done, 1), 1)


def _check_call(result, pattern, start, steps, latest_checkpoint):
    """Raises NonFiniteLossError naming the first iteration, step and terms with a non-finite loss."""
    if result["bad_repeat"] < 0:
        return
    bad = result["bad"]
    for j, due in enumerate(pattern):  # in the order they ran
        for i in due:
            iteration = start + result["bad_repeat"] * len(pattern) + j
            _check_finite({name: v for (pj, pi, name), v in bad.items() if (pj, pi) == (j, i)}, iteration,
                          steps[i].name, latest_checkpoint)


def _check_finite(losses, iteration, step_name, latest_checkpoint):
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        latest = latest_checkpoint or "none (no checkpoint was saved yet)"
        terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise NonFiniteLossError(
            f"Non-finite loss at step {iteration + 1} in step function '{step_name}': {terms}. Training "
            f"stopped without saving; the last good checkpoint is {latest}."
        )


def _call(calls, pattern, repeats):
    """Runs one call; a dataset that runs out becomes a ValueError naming the step it ran out at."""
    try:
        return calls(pattern, repeats)
    except (StopIteration, tf.errors.OutOfRangeError) as err:
        raise ValueError(f"the dataset from `make_dataset` ran out at step {int(calls.counter.numpy()) + 1}; "
                         f"it must repeat forever (`.repeat()`)") from err


def _main_losses(losses):
    """What the progress bar shows: the totals (`*loss`) and accuracies, else the first four terms."""
    main = {k: v for k, v in losses.items() if k.endswith(("loss", "accuracy"))} or dict(list(losses.items())[:4])
    return {k: f"{v:.3g}" for k, v in main.items()}


def _learning_rates(trackables):
    return {name: float(np.asarray(obj.learning_rate)) for name, obj in trackables.items()
            if isinstance(obj, keras.optimizers.Optimizer)}


def _is_due(done, every, total_steps):
    return every > 0 and (done % every == 0 or done == total_steps)


def _write_summaries(done, total_steps, losses, trackables, summary_every, image_fn, image_every):
    """Loss and learning-rate scalars every `summary_every` steps, `image_fn()` grids every `image_every`."""
    if _is_due(done, summary_every, total_steps):
        for name, value in losses.items():
            summaries.write_scalar(f"losses/{name}", value, done)
        for name, value in _learning_rates(trackables).items():
            summaries.write_scalar(f"learning_rate/{name}", value, done)
    if image_fn and _is_due(done, image_every, total_steps):
        for name, images in image_fn().items():
            summaries.write_images(name, images, done)


def train_loop(*, strategy, make_dataset, steps, total_steps, run_dir, trackables, config=None,
               checkpoint_every=1000, keep_checkpoints=3, summary_every=100, image_every=0,
               image_fn=None, verbose=1, after_iteration=None, steps_per_call=1):
    """Runs `steps` on batches of `make_dataset(start_step)` until `total_steps` iterations (see module doc).

    Returns the run summary dict; raises NonFiniteLossError on a NaN/Inf loss and re-raises
    KeyboardInterrupt (after saving) on Ctrl-C / SIGTERM.
    """
    # 1. Check the arguments and lay out the run directory (real for the chief, temporary for others).
    _check_arguments(total_steps, steps, trackables, after_iteration, checkpoint_every=checkpoint_every,
                     keep_checkpoints=keep_checkpoints, summary_every=summary_every, steps_per_call=steps_per_call)
    chief = is_chief(strategy)
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        if config is not None:
            atomic_io.write_json(os.path.join(run_dir, "config.json"), config)
    writer = tf.summary.create_file_writer(logs_dir(run_dir)) if chief else tf.summary.create_noop_writer()
    # 2. Restore the latest checkpoint, if any (weights, optimizer state and the step counter).
    checkpoints = _Checkpoints(run_dir, trackables, keep_checkpoints, chief)
    start_step = done = checkpoints.restore()
    # 3. Build the distributed input and the calls (one tf.function per pattern of iterations).
    iterator = iter(strategy.experimental_distribute_dataset(make_dataset(start_step)))
    calls = _Calls(strategy, steps, iterator, checkpoints.step)
    boundaries = (checkpoint_every, summary_every, image_every if image_fn and chief else 0)
    # 4. Iterate, a call at a time: run its iterations, guard against NaN/Inf, log, checkpoint; stop
    #    between calls on SIGTERM.
    losses = {}
    bar = tqdm(total=total_steps, initial=start_step, disable=not (chief and verbose), unit="step",
               dynamic_ncols=True, mininterval=1.0)
    started = time.perf_counter()
    try:
        with interrupts.DeferredSigterm() as sigterm:
            while done < total_steps:
                pattern, repeats = _plan(done, steps, steps_per_call, total_steps, boundaries)
                result = _call(calls, pattern, repeats)
                _check_call(result, pattern, done, steps, checkpoints.real.latest_checkpoint)
                losses.update({name: value for (_, _, name), value in result["last"].items()})
                done += repeats * len(pattern)
                with writer.as_default(step=done):
                    _write_summaries(done, total_steps, losses, trackables, summary_every,
                                     image_fn if chief else None, image_every)
                if done % checkpoint_every == 0:
                    checkpoints.save(done)
                if after_iteration is not None and after_iteration(done):
                    break
                bar.update(repeats * len(pattern))
                bar.set_postfix(_main_losses(losses), refresh=False)
                if done < total_steps:
                    sigterm.raise_if_received()
            checkpoints.save(done)
    except KeyboardInterrupt:
        done = int(checkpoints.step.numpy())  # counted in the graph: the iterations the weights have seen
        if not is_multi_worker(strategy) and done > start_step:
            checkpoints.save(done)
            print(f"Interrupted at step {done}: saved {checkpoints.writer.latest_checkpoint}", flush=True)
        raise
    finally:
        bar.close()
        writer.flush()
        checkpoints.close()
    seconds = time.perf_counter() - started
    return {"start_step": start_step, "final_step": done, "steps_run": done - start_step, "seconds": seconds,
            "steps_per_second": (done - start_step) / seconds if seconds > 0 else 0.0, "losses": losses,
            "checkpoint": checkpoints.real.latest_checkpoint}
