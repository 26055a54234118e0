"""Tests for bgshift_tf.training.gan_run and the train_gan entry point (tiny sizes)."""

import copy
import dataclasses
import glob
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.core import errors
from bgshift_tf.training import gan_run, loop
from bgshift_tf.training.gan import add_gan_targets
from bgshift_tf.training.gan_checkpoint import load_generator
from bgshift_tf.training.losses import LossWeights
from bgshift_tf.training.strategy import make_strategy
from tiny_records import make_domain_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "bgshift_tf", "configs")


def _read_events(logdir):
    """tag -> list of (step, tensor proto) from all event files under `logdir`."""
    events = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                events.setdefault(value.tag, []).append((event.step, value))
    return events


def test_sbsgan_update_is_the_same_on_one_and_two_replicas(tmp_path):
    # In-memory batches: the TFRecord pipeline trades determinism for speed (parallel, unordered reads).
    rng = np.random.default_rng(0)
    data = {"image": rng.uniform(-1, 1, (8, 16, 8, 3)).astype("float32"),
            "mask": (rng.uniform(size=(8, 16, 8, 1)) > 0.5).astype("float32"),
            "domain": np.array([0, 1] * 4, np.int64)}
    config = gan_run.merge_config(dict(
        domain_dirs=["unused0", "unused1"], image_height=16, image_width=8, batch_size=4, n_critic=1,
        base_filters=4, num_res_blocks=0, d_base_filters=4, d_num_layers=2))

    def make_dataset(start_step):
        batches = tf.data.Dataset.from_tensor_slices(data).batch(4, drop_remainder=True).repeat()
        return add_gan_targets(batches, num_domains=2, num_soft_mask=3, seed=start_step)

    results, initial = {}, None
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        with strategy.scope():
            gan = gan_run.build_sbsgan(config, num_domains=2)
        networks = (gan.generator, gan.discriminator)
        if initial is None:
            initial = [net.get_weights() for net in networks]
        for net, weights in zip(networks, initial):
            net.set_weights(weights)
        loop.train_loop(strategy=strategy, make_dataset=make_dataset,
                        steps=gan_run.gan_steps(gan), total_steps=1,
                        run_dir=str(tmp_path / name), trackables={"gan": gan}, verbose=0)
        assert int(gan.d_optimizer.iterations.numpy()) == 1 and int(gan.g_optimizer.iterations.numpy()) == 1
        results[name] = [w for net in networks for w in net.get_weights()]
    changed = [not np.allclose(a, b) for a, b in zip(results["default"], [w for ws in initial for w in ws])]
    assert any(changed)
    for a, b in zip(results["default"], results["mirrored"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown config keys \\['bogus'\\]"):
        gan_run.merge_config({"bogus": 1, "domain_dirs": ["a", "b"]})
    with pytest.raises(ValueError, match="domain_dirs=\\['a'\\]"):
        gan_run.merge_config({"domain_dirs": ["a"]})
    with pytest.raises(ValueError, match="n_critic=0"):
        gan_run.merge_config({"domain_dirs": ["a", "b"], "n_critic": 0})


def _train_gan_flags():
    """absl's FLAGS with train_gan's flags defined.

    conftest removes the flags a test defined but unloads only modules new to absl's registry, so a module
    imported by an earlier test may stay loaded without its flags: reload it then.
    """
    from absl import flags

    from bgshift_tf import train_gan

    if "domain_dirs" not in flags.FLAGS:
        importlib.reload(train_gan)
    return flags.FLAGS


def _parse_flagfile(name):
    """The trainer config a flagfile of bgshift_tf/configs gives (parsed by train_gan's own flags)."""
    from absl import flags

    defined = _train_gan_flags()
    path = os.path.join("bgshift_tf", "configs", name)
    fv = flags.FlagValues()
    for key in gan_run.DEFAULT_CONFIG:  # every config key is a train_gan flag
        fv[key] = copy.deepcopy(defined[key])
        if key in ("domain_dirs", "run_dir"):  # the paper's data paths need not exist to read its values
            fv[key].validators = []
    cwd = os.getcwd()
    os.chdir(REPO)  # nested --flagfile paths are relative to the repository root
    try:
        fv(["train_gan", f"--flagfile={path}"])
        return {key: fv[key].value for key in gan_run.DEFAULT_CONFIG}
    finally:
        fv.unparse_flags()
        os.chdir(cwd)


def test_flagfiles_parse_to_the_documented_presets():
    expected = {
        "gan_paper.flags": dict(image_height=256, image_width=128, batch_size=16, epochs=5, learning_rate=1e-4,
                                beta1=0.5, beta2=0.999, n_critic=5, base_filters=64, num_res_blocks=6,
                                lambda_rec=10.0, lambda_gp=10.0, upsample="transposed", skips=False),
        "gan_tiny.flags": dict(image_height=32, image_width=16, max_steps=4, base_filters=8, learning_rate=1e-4),
        "gan_demo.flags": dict(learning_rate=2e-4, beta1=0.5, lambda_sc=5.0, lambda_bgs=50.0, image_height=64,
                               base_filters=32, epochs=11, n_critic=1, upsample="nearest", steps_per_call=10),
        # the study's SBSGAN is the demo's, its 11 demo-world epochs fixed as iterations of the same batch
        "gan_study.flags": dict(base_filters=32, batch_size=16, max_steps=1232, upsample="nearest", n_critic=1,
                                attention="soft_mask", precision="float32"),
    }
    for name, values in expected.items():
        with open(os.path.join(CONFIGS, name)) as f:
            assert f.readline().startswith(f"# python -m bgshift_tf.train_gan --flagfile=bgshift_tf/configs/{name}")
        config = _parse_flagfile(name)
        for key, value in values.items():
            assert config[key] == value, (name, key)
    # The study trains the demo's SBSGAN: the two flagfiles differ only in the budget.
    demo, study = _parse_flagfile("gan_demo.flags"), _parse_flagfile("gan_study.flags")
    assert {key for key in demo if demo[key] != study[key]} == {"max_steps"}  # precision: float32 in both


def test_loss_weight_flags_come_from_loss_weights():
    defined = _train_gan_flags()
    for name, value in dataclasses.asdict(LossWeights()).items():
        assert defined[name].default == value == gan_run.DEFAULT_CONFIG[name], name
    assert "'w/o L_sc' ablation" in defined["lambda_sc"].help


def test_settings_not_from_paper():
    assert gan_run.settings_not_from_paper(_parse_flagfile("gan_paper.flags")) == []
    demo = gan_run.settings_not_from_paper(_parse_flagfile("gan_demo.flags"))
    assert demo == ["image_height 64 [256]", "image_width 32 [128]", "epochs 11 [5]", "learning_rate 0.0002 [0.0001]",
                    "n_critic 1 [5]", "lambda_bgs 50 [5]", "base_filters 32 [64]", "num_res_blocks 2 [6]",
                    "d_base_filters 16 [64]", "d_num_layers 5 [6]", "upsample nearest [transposed]",
                    "attention soft_mask [none]"]
    assert "max_steps 4 [epochs 5]" in gan_run.settings_not_from_paper(_parse_flagfile("gan_tiny.flags"))
    # Every loss weight counts, including a new field of LossWeights; keys a config lacks count as the paper's.
    changed = {name: 0.0 for name in LossWeights.names()}
    assert gan_run.settings_not_from_paper(changed) == [
        f"{name} 0 [{value:g}]" for name, value in dataclasses.asdict(LossWeights()).items()]
    assert gan_run.settings_not_from_paper({"beta1": 0.9, "max_steps": 0}) == []


def test_linear_decay_after_holds_then_falls_to_zero():
    schedule = gan_run.LinearDecayAfter(2e-4, decay_start=50, total_updates=100)
    values = [float(schedule(step)) for step in (0, 49, 50, 75, 99, 100, 120)]
    np.testing.assert_allclose(values, [2e-4, 2e-4, 2e-4, 1e-4, 4e-6, 0.0, 0.0], rtol=1e-5, atol=1e-12)
    assert gan_run.LinearDecayAfter.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="decay_start=120, total_updates=100"):
        gan_run.LinearDecayAfter(1e-4, 120, 100)


def test_build_sbsgan_lays_the_decay_over_each_optimizers_updates():
    config = gan_run.merge_config(dict(domain_dirs=["a", "b"], image_height=16, image_width=8, batch_size=4,
                                       base_filters=4, num_res_blocks=0, d_base_filters=4, d_num_layers=2,
                                       n_critic=2, lr_decay_start=0.5, g_ema_decay=0.99, upsample="nearest",
                                       skips=True, attention="soft_mask"))
    gan = gan_run.build_sbsgan(config, num_domains=2, total_steps=40)
    d_schedule, g_schedule = gan.d_optimizer._learning_rate, gan.g_optimizer._learning_rate
    assert (d_schedule.decay_start, d_schedule.total_updates) == (20, 40)
    assert (g_schedule.decay_start, g_schedule.total_updates) == (10, 20)
    assert gan.generator_ema.get_config() == gan.generator.get_config()
    assert (gan.generator.upsample, gan.generator.skips, gan.generator_ema.skips) == ("nearest", True, True)
    assert gan.generator.attention == gan.generator_ema.attention == "soft_mask"
    assert gan_run.settings_not_from_paper(config)[-5:] == [
        "upsample nearest [transposed]", "skips True [False]", "attention soft_mask [none]", "g_ema_decay 0.99 [0]",
        "lr_decay_start 0.5 [1]"]
    for key, value in (("g_ema_decay", 1.0), ("lr_decay_start", 0.0), ("steps_per_call", 0)):
        with pytest.raises(ValueError, match=f"{key}="):
            gan_run.merge_config({**config, key: value})


def test_build_sbsgan_takes_every_loss_weight_from_the_config():
    config = gan_run.merge_config(dict(domain_dirs=["a", "b"], image_height=16, image_width=8, batch_size=4,
                                       base_filters=4, num_res_blocks=0, d_base_filters=4, d_num_layers=2,
                                       lambda_sc=0.0, lambda_bgs=50.0))
    gan = gan_run.build_sbsgan(config, num_domains=2)
    assert gan.loss_weights == LossWeights(lambda_sc=0.0, lambda_bgs=50.0)
    # A forgotten or misspelt weight fails loudly instead of training with a default.
    with pytest.raises(ValueError, match=r"Missing: \['lambda_idc'\]"):
        gan_run.build_sbsgan({k: v for k, v in config.items() if k != "lambda_idc"}, num_domains=2)
    with pytest.raises(ValueError, match=r"unknown: \['lambda_bgss'\]"):
        gan_run.build_sbsgan({**config, "lambda_bgss": 5.0}, num_domains=2)


@pytest.mark.slow
def test_train_gan_end_to_end(tmp_path):
    dirs = [make_domain_records(tmp_path / name, name, i) for i, name in enumerate(("dom0", "dom1", "dom2"))]
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bgshift_tf.train_gan", "--flagfile=bgshift_tf/configs/gan_tiny.flags",
         f"--domain_dirs={','.join(dirs)}", f"--run_dir={run_dir}"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained 4 steps" in result.stdout
    # Checkpoints every 2 iterations, with the step counter and both optimizers (G updated every 2nd).
    state = tf.train.get_checkpoint_state(loop.checkpoint_dir(str(run_dir)))
    assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "4"]
    reader = tf.train.load_checkpoint(state.model_checkpoint_path)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    iterations = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "iteration" in k}
    assert sorted(iterations.values()) == [2, 4], iterations
    # config.json: the flags and model configs; load_generator rebuilds from it.
    with open(run_dir / "config.json") as f:
        config = json.load(f)
    assert config["flags"]["domain_dirs"] == dirs and config["flags"]["base_filters"] == 8
    assert config["generator"]["image_size"] == [32, 16] and config["discriminator"]["num_layers"] == 3
    assert config["domains"] == ["dom0", "dom1", "dom2"] and config["total_steps"] == 4
    generator = load_generator(str(run_dir))
    assert generator.soft_mask(tf.zeros([1, 32, 16, 3])).shape == (1, 32, 16, 3)
    # TensorBoard: every loss term and both learning rates each step; image grids at steps 2 and 4.
    events = _read_events(loop.logs_dir(str(run_dir)))
    for term in ("d_loss", "d_adv", "d_cls", "d_gp", "g_loss", "g_adv", "g_cls", "g_rec", "g_idc", "g_bgs", "g_sc"):
        assert [s for s, _ in events[f"losses/{term}"]][-1] == 4
    assert [s for s, _ in events["learning_rate/g_optimizer"]] == [1, 2, 3, 4]
    lr = tf.make_ndarray(events["learning_rate/d_optimizer"][0][1].tensor)
    np.testing.assert_allclose(lr, 1e-4, rtol=1e-6)
    grids = ["input", "mask", "soft_mask", "to_dom0", "to_dom1", "to_dom2", "reconstruction"]
    for grid in grids:
        steps = [s for s, _ in events[f"images/{grid}"]]
        assert steps == [2, 4], grid
        encoded = tf.make_ndarray(events[f"images/{grid}"][-1][1].tensor)
        assert encoded[:2].tolist() == [b"48", b"32"]  # width (3 domains x 1 image x 16), height
        assert tf.io.decode_png(encoded[2]).shape == (32, 48, 3)


def test_resume_with_another_architecture_is_refused_before_config_json_is_rewritten(tmp_path):
    dirs = [make_domain_records(tmp_path / name, name, i) for i, name in enumerate(("dom0", "dom1"))]
    run_dir = str(tmp_path / "run")
    config = {**_parse_flagfile("gan_tiny.flags"), "domain_dirs": dirs, "run_dir": run_dir, "max_steps": 2,
              "image_every": 0}
    gan_run.train_sbsgan(config)
    with open(os.path.join(run_dir, "config.json")) as f:
        written = f.read()
    with pytest.raises(errors.ArgumentError, match=rf"{run_dir}.*generator.base_filters 8 -> 4") as caught:
        gan_run.train_sbsgan({**config, "base_filters": 4, "max_steps": 4})
    assert "\n" not in str(caught.value)
    with open(os.path.join(run_dir, "config.json")) as f:
        assert f.read() == written
    assert load_generator(run_dir).get_config()["base_filters"] == 8
    # The same architecture resumes (a longer schedule is not an architecture change).
    assert gan_run.train_sbsgan({**config, "max_steps": 4})["total_steps"] == 4
