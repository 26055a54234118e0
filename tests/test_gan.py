"""Tests for bgshift_tf.training.gan: batch targets, step routing, loss tables, normalisers, replicas, checkpoints."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.models.discriminator import Discriminator
from bgshift_tf.models.generator import Generator
from bgshift_tf.training import gan_run, losses, loop
from bgshift_tf.training.gan import D_TERMS, G_TERMS, SBSGAN, add_gan_targets
from bgshift_tf.training.gan_checkpoint import checkpoint_trackables, load_generator

K = 3
SIZE = (32, 16)
BATCH = 8
SLOTS = K + 1


def _dataset(num_images=BATCH, batch=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return tf.data.Dataset.from_tensor_slices({
        "image": rng.uniform(-1, 1, (num_images, *SIZE, 3)).astype("float32"),
        "mask": (rng.uniform(size=(num_images, *SIZE, 1)) > 0.5).astype("float32"),
        "domain": rng.integers(0, K, num_images),
    }).batch(batch)


def _batch(seed=0):
    return next(iter(add_gan_targets(_dataset(seed=seed), K, SLOTS, seed=seed)))


def _model(optimizer=None, n_critic=5, g_ema_decay=0.0, **weights):
    def generator():
        return Generator(num_domains=K, image_size=SIZE, base_filters=8, num_res_blocks=1)

    discriminator = Discriminator(num_domains=K, image_size=SIZE, base_filters=8, num_layers=4)
    model = SBSGAN(generator(), discriminator, global_batch_size=BATCH, loss_weights=losses.LossWeights(**weights),
                   n_critic=n_critic, generator_ema=generator() if g_ema_decay else None, g_ema_decay=g_ema_decay)
    if optimizer is not None:
        model.compile(g_optimizer=optimizer(), d_optimizer=optimizer())
    return model


def _values(variables):
    return [v.numpy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


# === add_gan_targets ===


def test_add_gan_targets_contract():
    dataset = add_gan_targets(_dataset(num_images=24), K, SLOTS, seed=7)
    batches = list(dataset)
    assert len(batches) == 3
    targets = np.concatenate([b["target_domain"].numpy() for b in batches])
    domains = np.concatenate([b["domain"].numpy() for b in batches])
    assert np.all(targets != domains) and targets.min() >= 0 and targets.max() < K
    assert batches[0]["target_domain"].dtype == batches[0]["domain"].dtype
    for batch in batches:
        np.testing.assert_array_equal(batch["soft_mask_slot"], [1] * SLOTS + [0] * (BATCH - SLOTS))
        alpha = batch["gp_alpha"].numpy()
        assert alpha.shape == (BATCH,) and alpha.min() >= 0 and alpha.max() < 1
    again = list(add_gan_targets(_dataset(num_images=24), K, SLOTS, seed=7))
    other = list(add_gan_targets(_dataset(num_images=24), K, SLOTS, seed=8))
    for key in ("target_domain", "gp_alpha"):
        np.testing.assert_array_equal(
            np.concatenate([b[key] for b in again]), np.concatenate([b[key] for b in batches]))
    assert not np.array_equal(np.concatenate([b["gp_alpha"] for b in other]),
                              np.concatenate([b["gp_alpha"] for b in batches]))
    # Batches differ from each other (the draw depends on the batch index).
    assert not np.array_equal(batches[0]["gp_alpha"], batches[1]["gp_alpha"])


def test_add_gan_targets_rejects_non_dict_batches():
    with pytest.raises(ValueError, match="domain"):
        add_gan_targets(tf.data.Dataset.range(3), K, SLOTS)


# === Loss routing and normalisers ===


def test_generator_terms_follow_the_slot_routing():
    model = _model()
    g = model.generator
    batch = _batch()
    _, logs = model.generator_losses(batch)
    x, m, s, t = (batch[k].numpy() for k in ("image", "mask", "domain", "target_domain"))
    slot = batch["soft_mask_slot"].numpy() > 0
    soft = g.soft_mask(x[slot]).numpy()
    style = g.style_transfer(x[~slot], t[~slot]).numpy()
    # L_bgs over the K+1 slot images, L_idc over the others, each a mean over its own global count.
    np.testing.assert_allclose(logs["g_bgs"], np.mean(losses.background_suppression_loss(soft, x[slot], m[slot])),
                               rtol=1e-4)
    np.testing.assert_allclose(logs["g_idc"], np.mean(np.abs(style - x[~slot])), rtol=1e-4)
    # L_sc: style transfers of each slot image to its K-1 other domains, masked by its own mask.
    expected_sc = []
    for i, index in enumerate(np.flatnonzero(slot)):
        others = [k for k in range(K) if k != s[index]]
        transfers = g.style_transfer(np.repeat(x[index:index + 1], K - 1, 0), np.array(others)).numpy()
        expected_sc.append(float(losses.style_consistency_loss(
            soft[i:i + 1], x[index:index + 1], m[index:index + 1], transfers[:, None])[0]))
    np.testing.assert_allclose(logs["g_sc"], np.mean(expected_sc), rtol=1e-4)
    # L_rec: every fake (soft-mask and style) back to its source, mean over the whole batch.
    fakes = np.zeros_like(x)
    fakes[slot], fakes[~slot] = soft, style
    rec = np.abs(g.style_transfer(fakes, s).numpy() - x).mean()
    np.testing.assert_allclose(logs["g_rec"], rec, rtol=1e-4)


def test_fake_domain_targets_are_uniform_for_slots_and_one_hot_otherwise():
    model = _model()
    batch = _batch()
    _, logs = model.generator_losses(batch)
    slot = batch["soft_mask_slot"].numpy() > 0
    fakes = model.generator.generate(batch["image"], batch["target_domain"], batch["soft_mask_slot"])
    log_probs = tf.nn.log_softmax(model.discriminator(fakes)[1]).numpy()
    t = batch["target_domain"].numpy()
    per_example = np.where(slot, -log_probs.mean(axis=1), -log_probs[np.arange(BATCH), t])
    np.testing.assert_allclose(logs["g_cls"], per_example.mean(), rtol=1e-5)


@pytest.mark.parametrize("weight,term,losses_fn", [
    ("lambda_sc", "g_sc", "generator_losses"),
    ("lambda_bgs", "g_bgs", "generator_losses"),
    ("lambda_idc", "g_idc", "generator_losses"),
    ("lambda_gp", "d_gp", "discriminator_losses"),
])
def test_zero_weight_removes_exactly_its_term(weight, term, losses_fn):
    full = _model()
    ablated = SBSGAN(full.generator, full.discriminator, global_batch_size=BATCH,
                     loss_weights=losses.LossWeights(**{weight: 0.0}))
    network = full.generator if losses_fn == "generator_losses" else full.discriminator
    batch = _batch()
    with tf.GradientTape(persistent=True) as tape:
        full_loss, full_logs = getattr(full, losses_fn)(batch)
        without = full_loss - getattr(full.loss_weights, weight) * full_logs[term]
        ablated_loss, ablated_logs = getattr(ablated, losses_fn)(batch)
    assert float(full_logs[term]) > 0 and float(ablated_logs[term]) == 0.0
    np.testing.assert_allclose(ablated_loss, without, rtol=1e-5)
    for a, b in zip(tape.gradient(ablated_loss, network.trainable_variables),
                    tape.gradient(without, network.trainable_variables)):
        np.testing.assert_allclose(a, b, atol=1e-5)


# === Steps ===


def test_discriminator_step_updates_only_the_discriminator():
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-3, beta_1=0.5))
    g_before = _values(model.generator.trainable_variables)
    d_before = _values(model.discriminator.trainable_variables)
    logs = model.discriminator_step(_batch())
    assert set(logs) == {"d_loss", "d_adv", "d_cls", "d_gp"}
    assert not any(_changed(g_before, model.generator.trainable_variables))
    assert all(_changed(d_before, model.discriminator.trainable_variables))
    assert int(model.d_optimizer.iterations) == 1 and int(model.g_optimizer.iterations) == 0


def test_discriminator_step_without_discriminator_terms_leaves_it_alone():
    # lambda_adv = lambda_cls = lambda_gp = 0 (G trained on its image losses only): no D update, zero terms.
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-3, beta_1=0.5), lambda_adv=0, lambda_cls=0,
                   lambda_gp=0)
    d_before = _values(model.discriminator.trainable_variables)
    logs = model.discriminator_step(_batch())
    assert all(float(v) == 0.0 for v in logs.values())
    assert not any(_changed(d_before, model.discriminator.trainable_variables))
    assert int(model.d_optimizer.iterations) == 0
    assert float(model.generator_step(_batch())["g_rec"]) > 0


def test_generator_step_updates_only_the_generator():
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-3, beta_1=0.5))
    g_before = _values(model.generator.trainable_variables)
    d_before = _values(model.discriminator.trainable_variables)
    logs = model.generator_step(_batch())
    assert set(logs) == {"g_loss", "g_adv", "g_cls", "g_rec", "g_idc", "g_bgs", "g_sc"}
    assert not any(_changed(d_before, model.discriminator.trainable_variables))
    # Both branches and the encoder learn (soft-mask slots and style images share one batch).
    assert all(_changed(g_before, model.generator.trainable_variables))
    assert int(model.g_optimizer.iterations) == 1 and int(model.d_optimizer.iterations) == 0


def test_the_fused_step_equals_a_discriminator_then_a_generator_step():
    # One G forward pass fewer, the same update: losses and both networks' weights after one and three
    # iterations (Adam state included) agree with the two separate steps.
    batch = _batch(seed=2)
    keras.utils.set_random_seed(7)
    separate = _model(optimizer=lambda: keras.optimizers.Adam(1e-3, beta_1=0.5))
    keras.utils.set_random_seed(7)
    fused = _model(optimizer=lambda: keras.optimizers.Adam(1e-3, beta_1=0.5))
    steps = tf.function(lambda b: {**separate.discriminator_step(b), **separate.generator_step(b)})
    fused_step = tf.function(fused.discriminator_generator_step)
    for _ in range(3):
        expected, logs = steps(batch), fused_step(batch)
        assert set(logs) == set(expected)
        for key in expected:
            np.testing.assert_allclose(logs[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)
    for network in ("generator", "discriminator"):
        for a, b in zip(getattr(separate, network).weights, getattr(fused, network).weights):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4, err_msg=a.path)
    assert int(fused.g_optimizer.iterations) == int(fused.d_optimizer.iterations) == 3


def test_the_weight_average_follows_the_generator_with_its_warm_up_decay(tmp_path):
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-2, beta_1=0.5), g_ema_decay=0.5)
    start = _values(model.generator_ema.weights)
    np.testing.assert_array_equal(start[0], model.generator.weights[0].numpy())
    model.generator_step(_batch())
    # Update 1: decay min(0.5, 2 / 11) = 2/11 toward the new weights.
    after = model.generator.weights[0].numpy()
    np.testing.assert_allclose(model.generator_ema.weights[0].numpy(), 2 / 11 * start[0] + 9 / 11 * after,
                               rtol=1e-5, atol=1e-7)
    for _ in range(3):
        model.discriminator_generator_step(_batch())
    assert not np.allclose(model.generator_ema.weights[0].numpy(), model.generator.weights[0].numpy())
    # Saved and restored: load_generator returns the average (or the raw weights on request).
    checkpoint = tf.train.Checkpoint(step=tf.Variable(4, dtype=tf.int64), **checkpoint_trackables(model))
    assert "generator_ema" in checkpoint_trackables(model)
    tf.train.CheckpointManager(checkpoint, str(tmp_path / "checkpoints"), max_to_keep=1).save(4)
    (tmp_path / "config.json").write_text(json.dumps({"generator": model.generator.get_config(),
                                                      "sbsgan": {"g_ema_decay": 0.5}}))
    x = _batch()["image"]
    np.testing.assert_allclose(load_generator(str(tmp_path)).soft_mask(x), model.generator_ema.soft_mask(x), atol=1e-6)
    np.testing.assert_allclose(load_generator(str(tmp_path), average=False).soft_mask(x),
                               model.generator.soft_mask(x), atol=1e-6)


def test_the_weight_average_is_the_same_on_two_replicas():
    batch_dataset = add_gan_targets(_dataset(), K, SLOTS, seed=3)
    keras.utils.set_random_seed(5)
    single = _model(optimizer=lambda: keras.optimizers.SGD(0.1), g_ema_decay=0.9)
    single.discriminator_generator_step(next(iter(batch_dataset)))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(5)
        mirrored = _model(optimizer=lambda: keras.optimizers.SGD(0.1), g_ema_decay=0.9)
    tf.function(lambda b: strategy.run(mirrored.discriminator_generator_step, args=(b,)))(
        next(iter(strategy.experimental_distribute_dataset(batch_dataset))))
    for a, b in zip(single.generator_ema.weights, mirrored.generator_ema.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, err_msg=a.path)
        for replica_value in b.value.values:
            np.testing.assert_allclose(replica_value.numpy(), a.numpy(), atol=1e-5, err_msg=a.path)


def test_one_and_two_replicas_give_the_same_update():
    # With 2 replicas, replica 0 holds all K+1 soft-mask slots and replica 1 none (the global
    # normalisers and the fixed-size L_sc gather must make that invisible). The 1-replica reference runs
    # eagerly (no second trace).
    batch_dataset = add_gan_targets(_dataset(), K, SLOTS, seed=3)
    keras.utils.set_random_seed(5)
    single = _model(optimizer=lambda: keras.optimizers.SGD(0.1))
    batch = next(iter(batch_dataset))
    logs_1 = {**single.discriminator_step(batch), **single.generator_step(batch)}

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(5)
        mirrored = _model(optimizer=lambda: keras.optimizers.SGD(0.1))

    @tf.function
    def both_steps(batch):
        d_logs = strategy.run(mirrored.discriminator_step, args=(batch,))
        g_logs = strategy.run(mirrored.generator_step, args=(batch,))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in {**d_logs, **g_logs}.items()}

    logs_2 = both_steps(next(iter(strategy.experimental_distribute_dataset(batch_dataset))))
    for key in logs_1:
        np.testing.assert_allclose(logs_2[key], logs_1[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for network in ("generator", "discriminator"):
        for a, b in zip(getattr(single, network).weights, getattr(mirrored, network).weights):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, err_msg=a.path)


def test_a_few_steps_reduce_background_suppression_and_identity_losses():
    model = _model(optimizer=lambda: keras.optimizers.Adam(2e-3, beta_1=0.5))
    batch = _batch()
    d_step, g_step = model.discriminator_step, model.generator_step
    history = []
    for _ in range(8):
        d_step(batch)
        history.append({k: float(v) for k, v in g_step(batch).items()})
    assert history[-1]["g_bgs"] < 0.7 * history[0]["g_bgs"]
    assert history[-1]["g_idc"] < history[0]["g_idc"]
    assert history[-1]["g_sc"] < history[0]["g_sc"]


def test_the_loop_runs_one_generator_update_per_n_critic_discriminator_updates(tmp_path):
    # The one training path: gan_run.gan_steps on training.loop (4 iterations, n_critic 2).
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-4), n_critic=2)
    summary = loop.train_loop(
        strategy=tf.distribute.get_strategy(), make_dataset=lambda start: add_gan_targets(_dataset().repeat(), K, SLOTS),
        steps=gan_run.gan_steps(model), total_steps=4, run_dir=str(tmp_path), trackables={"gan": model},
        verbose=0)
    assert int(model.d_optimizer.iterations) == 4 and int(model.g_optimizer.iterations) == 2
    assert [step.name for step in gan_run.gan_steps(model)] == ["d", "dg"]
    assert set(summary["losses"]) == {"d_loss", "g_loss"} | {name for _, name, _ in D_TERMS + G_TERMS}
    assert summary["losses"]["g_bgs"] > 0 and summary["losses"]["d_gp"] > 0


def test_the_loss_tables_use_every_loss_weight_and_only_those():
    # A LossWeights field no term reads would be a weight that does nothing; an entry naming no field fails.
    used = {weight for weight, _, _ in D_TERMS + G_TERMS}
    assert used == set(losses.LossWeights.names())
    names = [name for _, name, _ in D_TERMS + G_TERMS]
    assert len(names) == len(set(names))


def test_the_losses_are_the_weighted_sums_of_their_logged_terms():
    model = _model(lambda_adv=2.0, lambda_cls=0.5, lambda_rec=3.0, lambda_idc=1.5, lambda_bgs=7.0, lambda_sc=0.25,
                   lambda_gp=4.0)
    batch = _batch()
    for terms, losses_fn, total in ((D_TERMS, model.discriminator_losses, "d_loss"),
                                    (G_TERMS, model.generator_losses, "g_loss")):
        loss, logs = losses_fn(batch)
        expected = sum(getattr(model.loss_weights, weight) * float(logs[name]) for weight, name, _ in terms)
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
        np.testing.assert_allclose(float(logs[total]), float(loss))


# === Config and checkpoints ===


def test_config_round_trip():
    model = _model(lambda_sc=0.0, n_critic=3)
    clone = SBSGAN.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.get_config() == model.get_config()
    assert clone.loss_weights == losses.LossWeights(lambda_sc=0.0) and clone.n_critic == 3
    clone.generator.set_weights(model.generator.get_weights())
    clone.discriminator.set_weights(model.discriminator.get_weights())
    batch = _batch()
    np.testing.assert_allclose(clone(batch["image"]), model(batch["image"]), atol=1e-6)
    for a, b in zip(clone.generator_losses(batch)[1].values(), model.generator_losses(batch)[1].values()):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bad_arguments():
    generator = Generator(num_domains=K, image_size=SIZE, base_filters=8, num_res_blocks=1)
    with pytest.raises(ValueError, match="num_soft_mask=8"):
        SBSGAN(generator, Discriminator(K, SIZE, 8, 4), global_batch_size=8, num_soft_mask=8)
    with pytest.raises(ValueError, match="3 != 2"):
        SBSGAN(generator, Discriminator(2, SIZE, 8, 4), global_batch_size=8)
    with pytest.raises(TypeError, match="loss_weights=\\{'lambda_sc': 0\\}"):
        SBSGAN(generator, Discriminator(K, SIZE, 8, 4), global_batch_size=8, loss_weights={"lambda_sc": 0})
    with pytest.raises(ValueError, match="n_critic=0"):
        SBSGAN(generator, Discriminator(K, SIZE, 8, 4), global_batch_size=8, n_critic=0)


def test_load_generator_restores_the_latest_checkpoint(tmp_path):
    model = _model(optimizer=lambda: keras.optimizers.Adam(1e-3))
    model.generator_step(_batch())
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), **checkpoint_trackables(model))
    tf.train.CheckpointManager(checkpoint, str(tmp_path / "checkpoints"), max_to_keep=2).save(1)
    (tmp_path / "config.json").write_text(json.dumps({"generator": model.generator.get_config(), "steps": 1}))
    loaded = load_generator(str(tmp_path))
    x = _batch()["image"]
    np.testing.assert_allclose(loaded.soft_mask(x), model.generator.soft_mask(x), atol=1e-6)
    np.testing.assert_allclose(loaded.style_transfer(x, [1] * BATCH), model.generator.style_transfer(x, [1] * BATCH),
                               atol=1e-6)


def test_load_generator_errors_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_generator(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"generator": _model().generator.get_config()}))
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        load_generator(str(tmp_path))
