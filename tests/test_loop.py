"""Tests for bgshift_tf.training.loop: replica-invariant updates, schedule, checkpoints, resume, NaN guard,
summaries, SIGTERM and multi-worker training (tiny stand-in models)."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import loop_helper
from bgshift_tf.training import loop
from bgshift_tf.training.strategy import make_strategy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join(REPO, "tests", "loop_helper.py")
SUBPROCESS_TIMEOUT = 120


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _helper_cmd(run_dir, out, **flags):
    return [sys.executable, HELPER, f"--run_dir={run_dir}", f"--out={out}"] + [f"--{k}={v}" for k, v in flags.items()]


def _train_in_process(strategy, run_dir, total_steps, x=None, y=None, checkpoint_every=100, **kwargs):
    if x is None:
        x, y = loop_helper.data()
    model, optimizer = loop_helper.build(strategy)
    summary = loop.train_loop(
        strategy=strategy, make_dataset=loop_helper.make_dataset_fn(x, y),
        steps=[loop.ScheduledStep("fit", loop_helper.make_step(model, optimizer))], total_steps=total_steps,
        run_dir=str(run_dir), trackables={"model": model, "optimizer": optimizer},
        checkpoint_every=checkpoint_every, verbose=0, **kwargs)
    return summary, model, optimizer


def _checkpoint_steps(run_dir):
    state = tf.train.get_checkpoint_state(loop.checkpoint_dir(str(run_dir)))
    if state is None:
        return []
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


# === Schedule ===


def test_scheduled_step_due():
    every_third = loop.ScheduledStep("g", fn=None, every_n=3)
    assert [i for i in range(9) if every_third.due(i)] == [2, 5, 8]
    but_every_third = loop.ScheduledStep("d", fn=None, skip_every=3)
    assert [i for i in range(9) if but_every_third.due(i)] == [0, 1, 3, 4, 6, 7]
    assert loop.schedule_period([every_third, but_every_third, loop.ScheduledStep("x", None, every_n=2)]) == 6


# === Several iterations per call ===


def _two_step_run(strategy, run_dir, total_steps, steps_per_call, x=None, y=None, **kwargs):
    """Step "a" at every iteration but every third, step "b" at every third: the GAN's D / D+G shape."""
    if x is None:
        x, y = loop_helper.data()
    model_a, opt_a = loop_helper.build(strategy)
    model_b, opt_b = loop_helper.build(strategy, lr=0.1)
    steps = [loop.ScheduledStep("a", loop_helper.make_step(model_a, opt_a, "loss_a"), skip_every=3),
             loop.ScheduledStep("b", loop_helper.make_step(model_b, opt_b, "loss_b"), every_n=3)]
    summary = loop.train_loop(
        strategy=strategy, make_dataset=loop_helper.make_dataset_fn(x, y), steps=steps, total_steps=total_steps,
        run_dir=str(run_dir), trackables={"a": model_a, "b": model_b, "opt_a": opt_a, "opt_b": opt_b},
        verbose=0, steps_per_call=steps_per_call, **kwargs)
    iterations = (int(opt_a.iterations.numpy()), int(opt_b.iterations.numpy()))
    return summary, model_a.get_weights() + model_b.get_weights(), iterations


def test_several_steps_per_call_give_the_same_run_checkpoints_and_summaries(tmp_path):
    strategy = make_strategy("default")
    runs = {n: _two_step_run(strategy, tmp_path / f"n{n}", 20, n, checkpoint_every=8, summary_every=5)
            for n in (1, 6)}
    (s1, w1, it1), (s6, w6, it6) = runs[1], runs[6]
    assert it1 == it6 == (14, 6)
    for a, b in zip(w1, w6):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert s1["losses"] == pytest.approx(s6["losses"], rel=1e-6)
    assert _checkpoint_steps(tmp_path / "n6") == _checkpoint_steps(tmp_path / "n1") == [8, 16, 20]
    for n in (1, 6):
        assert _event_tags(loop.logs_dir(str(tmp_path / f"n{n}")))["losses/loss_b"] == [5, 10, 15, 20]


def test_several_steps_per_call_resume_on_the_checkpointed_iteration(tmp_path):
    strategy = make_strategy("default")
    # A run cut at 10 (its last call ended on the total), resumed to 20 with another call size: the same
    # weights as one run straight through, optimizer counts included.
    _two_step_run(strategy, tmp_path / "cut", 10, 6, checkpoint_every=4)
    assert _checkpoint_steps(tmp_path / "cut")[-1] == 10
    summary, weights, iterations = _two_step_run(strategy, tmp_path / "cut", 20, 9, checkpoint_every=4)
    assert summary["start_step"] == 10 and summary["final_step"] == 20 and iterations == (14, 6)
    _, straight, _ = _two_step_run(strategy, tmp_path / "straight", 20, 1, checkpoint_every=4)
    for a, b in zip(weights, straight):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_several_steps_per_call_catch_a_nan_at_its_step(tmp_path):
    strategy = make_strategy("default")
    x, y = loop_helper.data(nan_at_batch=7)  # the 8th batch (step 8, a step "a" iteration) holds a NaN
    with pytest.raises(loop.NonFiniteLossError, match=r"step 8 in step function 'a': loss_a=nan.*ckpt-6"):
        _two_step_run(strategy, tmp_path, 20, 6, x=x, y=y, checkpoint_every=6)
    assert _checkpoint_steps(tmp_path) == [6]


def test_steps_per_call_refuses_an_every_iteration_hook(tmp_path):
    with pytest.raises(ValueError, match="after_iteration.*steps_per_call=4"):
        _train_in_process(make_strategy("default"), tmp_path, 4, steps_per_call=4, after_iteration=lambda done: False)


# === One update, one or two replicas ===


def test_one_and_two_replicas_give_the_same_update_with_a_schedule(tmp_path):
    x, y = loop_helper.data()
    results = {}
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        model_a, opt_a = loop_helper.build(strategy)
        model_b, opt_b = loop_helper.build(strategy, lr=0.1)
        steps = [loop.ScheduledStep("a", loop_helper.make_step(model_a, opt_a, "loss_a")),
                 loop.ScheduledStep("b", loop_helper.make_step(model_b, opt_b, "loss_b"), every_n=2)]
        summary = loop.train_loop(
            strategy=strategy, make_dataset=loop_helper.make_dataset_fn(x, y), steps=steps, total_steps=3,
            run_dir=str(tmp_path / name), trackables={"a": model_a, "b": model_b, "opt_a": opt_a, "opt_b": opt_b},
            verbose=0)
        results[name] = (summary, model_a.get_weights() + model_b.get_weights(),
                         int(opt_a.iterations.numpy()), int(opt_b.iterations.numpy()))
    (s1, w1, ia1, ib1), (s2, w2, ia2, ib2) = results["default"], results["mirrored"]
    assert (ia1, ib1) == (ia2, ib2) == (3, 1)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert s1["losses"].keys() == {"loss_a", "loss_b"}
    for key in s1["losses"]:
        np.testing.assert_allclose(s1["losses"][key], s2["losses"][key], rtol=1e-5)


# === Checkpoints, config, summaries ===


def _event_tags(logdir):
    tags = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_checkpoints_config_and_summaries(tmp_path):
    strategy = make_strategy("default")

    def image_fn():
        return {"grid": -tf.ones((6, 4, 3))}

    summary, model, optimizer = _train_in_process(
        strategy, tmp_path, total_steps=7, checkpoint_every=2, keep_checkpoints=2, summary_every=3,
        image_every=4, image_fn=image_fn, config={"flags": {"lr": 0.05}, "models": {"reg": {"units": 2}}})
    assert summary["final_step"] == 7 and summary["steps_run"] == 7
    # Every 2 steps keeping 2, plus the final step.
    assert _checkpoint_steps(tmp_path) == [6, 7]
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == {"flags": {"lr": 0.05}, "models": {"reg": {"units": 2}}}
    tags = _event_tags(loop.logs_dir(str(tmp_path)))
    assert tags["losses/mse"] == [3, 6, 7]
    assert tags["learning_rate/optimizer"] == [3, 6, 7]
    assert tags["grid"] == [4, 7]
    # Restoring the final checkpoint reproduces the trained weights and optimizer state.
    model2, opt2 = loop_helper.build(strategy)
    ckpt = tf.train.Checkpoint(step=tf.Variable(0, dtype=tf.int64), model=model2, optimizer=opt2)
    ckpt.restore(summary["checkpoint"])
    opt2.build(model2.trainable_variables)
    assert int(ckpt.step.numpy()) == 7 and int(opt2.iterations.numpy()) == 7
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_finished_run_is_not_trained_again(tmp_path):
    strategy = make_strategy("default")
    _train_in_process(strategy, tmp_path, total_steps=3)
    summary, _, optimizer = _train_in_process(strategy, tmp_path, total_steps=3)
    assert summary["start_step"] == 3 and summary["steps_run"] == 0
    assert int(optimizer.iterations.numpy()) == 3


def test_bad_arguments_are_named(tmp_path):
    strategy = make_strategy("default")
    with pytest.raises(ValueError, match="checkpoint_every=0"):
        _train_in_process(strategy, tmp_path, total_steps=3, checkpoint_every=0)
    with pytest.raises(ValueError, match="total_steps=0"):
        _train_in_process(strategy, tmp_path, total_steps=0)


def test_finite_dataset_is_rejected(tmp_path):
    strategy = make_strategy("default")
    model, optimizer = loop_helper.build(strategy)
    x, y = loop_helper.data(num=16)
    with pytest.raises(ValueError, match="ran out at step 3"):
        loop.train_loop(
            strategy=strategy, make_dataset=lambda start: tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(8),
            steps=[loop.ScheduledStep("fit", loop_helper.make_step(model, optimizer))], total_steps=5,
            run_dir=str(tmp_path), trackables={"model": model, "optimizer": optimizer}, verbose=0)


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_sigterm_mid_iteration_finishes_that_iteration_then_saves_it(tmp_path, steps_per_call):
    strategy = make_strategy("default")
    finished = []

    def image_fn():
        # SIGTERM arrives while the loop is busy inside iteration 3 (writing its image summary).
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        finished.append(True)
        return {"grid": -tf.ones((6, 4, 3))}

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        _train_in_process(strategy, tmp_path, total_steps=8, checkpoint_every=100, image_every=3,
                          image_fn=image_fn, steps_per_call=steps_per_call)
    # The image call ran to its end, the loop stopped after that iteration and saved it; the handler is gone.
    assert finished == [True]
    assert _checkpoint_steps(tmp_path) == [3]
    assert _event_tags(loop.logs_dir(str(tmp_path)))["grid"] == [3]
    assert signal.getsignal(signal.SIGTERM) == previous


# === NaN guard ===


def test_nan_loss_stops_with_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    strategy = make_strategy("default")
    x, y = loop_helper.data(nan_at_batch=4)  # the 5th batch (step 5) holds a NaN
    with pytest.raises(loop.NonFiniteLossError, match=r"step 5 in step function 'fit': mse=nan.*ckpt-4"):
        _train_in_process(strategy, tmp_path, total_steps=8, x=x, y=y, checkpoint_every=2)
    assert _checkpoint_steps(tmp_path) == [2, 4]
    # The kept checkpoint is finite and equals 4 clean steps.
    clean_x, clean_y = loop_helper.data()
    _, clean_model, _ = _train_in_process(strategy, tmp_path / "clean", total_steps=4, x=clean_x, y=clean_y)
    model, optimizer = loop_helper.build(strategy)
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(
        tf.train.latest_checkpoint(loop.checkpoint_dir(str(tmp_path)))).expect_partial()
    for a, b in zip(model.get_weights(), clean_model.get_weights()):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=1e-6)


# === Processes: resume after SIGKILL, SIGTERM, multi-worker ===


def _run_and_kill(run_dir, out, sig, after_step):
    """Starts a slow 40-step training (0.1 s per step), sends `sig` once a checkpoint past `after_step` exists."""
    proc = subprocess.Popen(_helper_cmd(run_dir, out, total_steps=40, checkpoint_every=5, seconds_per_step=0.1),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + SUBPROCESS_TIMEOUT
        while not [s for s in _checkpoint_steps(run_dir) if s > after_step]:
            assert proc.poll() is None, f"training exited early: {proc.communicate()[1][-2000:]}"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.1)
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode != 0 and not out.exists()
    return stdout


@pytest.mark.slow
def test_resume_after_sigkill_and_sigterm_continues_from_checkpoints(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "out.json"
    # 1. SIGKILL: nothing runs at exit, the periodic checkpoint (a multiple of 5) is the resume point.
    _run_and_kill(run_dir, out, signal.SIGKILL, after_step=0)
    first = _checkpoint_steps(run_dir)[-1]
    assert 0 < first < 40 and first % 5 == 0
    # 2. SIGTERM after resuming: the loop finishes the running iteration and saves the step it reached.
    stdout = _run_and_kill(run_dir, out, signal.SIGTERM, after_step=first)
    second = _checkpoint_steps(run_dir)[-1]
    assert first < second < 40 and f"Interrupted at step {second}: saved" in stdout
    # 3. Resume to the end: step count and optimizer iterations continue from the checkpoint.
    subprocess.run(_helper_cmd(run_dir, out, total_steps=40, checkpoint_every=5), env=_env(), check=True,
                   timeout=SUBPROCESS_TIMEOUT, capture_output=True)
    with open(out) as f:
        result = json.load(f)
    assert result["summary"]["start_step"] == second
    assert result["summary"]["final_step"] == 40 and result["iterations"] == 40
    assert _checkpoint_steps(run_dir)[-1] == 40
    # The data resumes at the same batch, so the result equals an uninterrupted run.
    _, model, _ = _train_in_process(make_strategy("default"), tmp_path / "ref", total_steps=40)
    for a, b in zip(model.get_weights(), result["weights"]):
        np.testing.assert_allclose(a, np.asarray(b, np.float32), atol=1e-5)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_training_matches_single_process(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            _helper_cmd(run_dir, tmp_path / f"out{index}.json", total_steps=6, checkpoint_every=3,
                        strategy="multi_worker"),
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert proc.returncode == 0, stderr[-3000:]
    finally:
        for proc in procs:
            proc.kill()
    outs = []
    for index in range(2):
        with open(tmp_path / f"out{index}.json") as f:
            outs.append(json.load(f))
    assert outs[0]["iterations"] == outs[1]["iterations"] == 6
    _, model, _ = _train_in_process(make_strategy("default"), tmp_path / "single", total_steps=6)
    for w0, w1, ref in zip(outs[0]["weights"], outs[1]["weights"], model.get_weights()):
        np.testing.assert_array_equal(np.asarray(w0), np.asarray(w1))
        np.testing.assert_allclose(np.asarray(w0, np.float32), ref, atol=1e-5)
    # Only the chief wrote the real checkpoints, summaries and config.
    assert _checkpoint_steps(run_dir) == [3, 6]
    assert os.listdir(run_dir) and sorted(os.listdir(run_dir)) == ["checkpoints", "config.json", "logs"]
