"""IDE and DA-2S: shapes, ISDC/SE wiring, ablation switches, configs, unshared streams."""

import keras
import numpy as np
import pytest

from bgshift_tf.models import reid

SMALL = {"backbone": "densenet_small", "input_shape": (64, 32, 3)}


def _images(batch=2, shape=(64, 32, 3), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, *shape)).astype("float32")


def _shapes(tensors):
    return [tuple(t.shape[1:]) for t in tensors]


@pytest.mark.slow
def test_da2s_densenet121_every_intermediate_shape():
    model = reid.DA2S(751, backbone="densenet121", input_shape=(256, 128, 3))
    zeros = np.zeros((1, 256, 128, 3), "float32")
    out = model.features((zeros, zeros))
    taps = [(64, 32, 64), (32, 16, 128), (16, 8, 256), (8, 4, 512), (8, 4, 1024)]
    assert _shapes(out["stream1_taps"]) == taps and _shapes(out["stream2_taps"]) == taps
    assert _shapes(out["isdc"]) == [(32, 16, 256), (16, 8, 512), (8, 4, 1024), (8, 4, 2048)]
    assert tuple(out["fused"].shape[1:]) == (8, 4, 2048)
    assert tuple(out["feature"].shape) == (1, 2048) and model.feature_dim == 2048
    assert tuple(model.head(out["feature"]).shape) == (1, 751)


def test_small_da2s_and_ide_shapes():
    da2s = reid.DA2S(7, **SMALL)
    x = _images()
    out = da2s.features((x, x))
    assert _shapes(out["stream1_taps"]) == [(16, 8, 64), (8, 4, 64), (4, 2, 64), (2, 1, 64), (2, 1, 128)]
    # O_n has the width of the next concatenated tap pair; O_4 that of the concatenated final maps.
    assert _shapes(out["isdc"]) == [(8, 4, 128), (4, 2, 128), (2, 1, 128), (2, 1, 256)]
    assert tuple(da2s.embed((x, x)).shape) == (2, 256) and tuple(da2s((x, x)).shape) == (2, 7)
    ide = reid.IDE(7, **SMALL)
    assert tuple(ide.embed(x).shape) == (2, 128) and tuple(ide(x).shape) == (2, 7)
    assert ide.feature_dim == 128


def test_logits_are_the_head_applied_to_the_embedding():
    model = reid.DA2S(5, **SMALL)
    x1, x2 = _images(seed=1), _images(seed=2)
    np.testing.assert_allclose(
        model((x1, x2)).numpy(), model.head(model.embed((x1, x2))).numpy(), rtol=1e-5, atol=1e-5
    )


def test_isdc_sums_the_previous_output_with_the_concatenated_taps():
    model = reid.DA2S(5, **SMALL)
    x1, x2 = _images(seed=1), _images(seed=2)
    out = model.features((x1, x2))
    t1, t2, o = out["stream1_taps"], out["stream2_taps"], out["isdc"]
    first = model.isdc_blocks[0](np.concatenate([t1[0], t2[0]], -1))
    np.testing.assert_allclose(first.numpy(), o[0].numpy(), atol=1e-5)
    for n in range(1, 4):
        expected = model.isdc_blocks[n](np.concatenate([t1[n], t2[n]], -1) + o[n - 1].numpy())
        np.testing.assert_allclose(expected.numpy(), o[n].numpy(), atol=1e-5)
    se_out = model.se(np.concatenate([t1[4], t2[4]], -1))
    np.testing.assert_allclose(out["fused"].numpy(), se_out.numpy() + o[3].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        out["feature"].numpy(), out["fused"].numpy().mean(axis=(1, 2)), atol=1e-5
    )


def test_ablation_switches_change_the_architecture():
    x = _images()
    models = {}
    for use_se, use_isdc in [(False, False), (True, False), (True, True)]:
        keras.utils.set_random_seed(3)
        model = reid.DA2S(5, use_se=use_se, use_isdc=use_isdc, **SMALL)
        model((x, x))
        out = model.features((x, x))
        models[(use_se, use_isdc)] = (model, out)
    baseline, out = models[(False, False)]
    assert baseline.se is None and baseline.isdc_blocks == [] and out["isdc"] == []
    # Baseline two-stream: the feature is the concatenation of the two streams' GAP features.
    gaps = [t[4].numpy().mean(axis=(1, 2)) for t in (out["stream1_taps"], out["stream2_taps"])]
    np.testing.assert_allclose(out["feature"].numpy(), np.concatenate(gaps, -1), atol=1e-5)
    # SE on the 256 concatenated channels, reduction 16: 256*16+16 + 16*256+256 parameters.
    se_params = models[(True, False)][0].count_params() - baseline.count_params()
    assert se_params == 256 * 16 + 16 + 16 * 256 + 256
    # ISDC: four bias-free 3x3 convs (in -> out) with BN (4 per channel).
    widths = [(128, 128), (128, 128), (128, 128), (128, 256)]
    isdc_params = sum(9 * cin * cout + 4 * cout for cin, cout in widths)
    full = models[(True, True)][0]
    assert full.count_params() - models[(True, False)][0].count_params() == isdc_params
    assert [b.strides for b in full.isdc_blocks] == [2, 2, 2, 1]


def _se_params(channels, reduction=16):
    """SqueezeExcitation on C channels, hidden h = max(1, C // r): squeeze C*h + h, excite h*C + C."""
    hidden = max(1, channels // reduction)
    return 2 * channels * hidden + hidden + channels


def test_isdc_se_adds_one_se_block_per_isdc_output():
    x, x2 = _images(), _images(seed=4)
    keras.utils.set_random_seed(3)
    plain = reid.DA2S(5, **SMALL)
    keras.utils.set_random_seed(3)
    variant = reid.DA2S(5, isdc_se=True, **SMALL)
    plain((x, x2))
    out = variant.features((x, x2))
    # Same shapes as DA-2S: the SE blocks re-weight channels and keep O_n's shape.
    assert _shapes(out["isdc"]) == [(8, 4, 128), (4, 2, 128), (2, 1, 128), (2, 1, 256)]
    assert tuple(out["feature"].shape) == (2, 256) and tuple(variant((x, x2)).shape) == (2, 5)
    # Parameters: DA-2S + sum over the ISDC outputs O_n (C_n = 128, 128, 128, 256) of 2*C*(C//16) + C//16 + C.
    assert variant.count_params() - plain.count_params() == sum(_se_params(c) for c in (128, 128, 128, 256))
    # Wiring: O_n = SE_n(ISDC_n([S1_n, S2_n] + O_{n-1})), the re-weighted O_n feeding O_{n+1} and the sum.
    t1, t2, o = out["stream1_taps"], out["stream2_taps"], out["isdc"]
    for n in range(4):
        x_n = np.concatenate([t1[n], t2[n]], -1) + (o[n - 1].numpy() if n else 0.0)
        expected = variant.isdc_se_blocks[n](variant.isdc_blocks[n](x_n))
        np.testing.assert_allclose(expected.numpy(), o[n].numpy(), atol=1e-5)
    assert not np.allclose(o[0].numpy(), variant.isdc_blocks[0](np.concatenate([t1[0], t2[0]], -1)).numpy())
    np.testing.assert_allclose(
        out["fused"].numpy(), variant.se(np.concatenate([t1[4], t2[4]], -1)).numpy() + o[3].numpy(), atol=1e-5)


def test_isdc_se_without_isdc_is_rejected():
    with pytest.raises(ValueError, match="isdc_se=True, use_isdc=False"):
        reid.DA2S(5, use_isdc=False, isdc_se=True, **SMALL)


def test_squeeze_excitation_hand_computed():
    se = reid.SqueezeExcitation(reduction=2)
    x = np.arange(2 * 1 * 2 * 4, dtype="float32").reshape(2, 1, 2, 4)
    se.build(x.shape)
    se.squeeze.set_weights([np.zeros((4, 2), "float32"), np.zeros(2, "float32")])
    bias = np.array([0.0, 1.0, -1.0, 2.0], "float32")
    se.excite.set_weights([np.zeros((2, 4), "float32"), bias])
    expected = x / (1.0 + np.exp(-bias))
    np.testing.assert_allclose(se(x).numpy(), expected, rtol=1e-6)


def test_the_two_streams_share_no_variables():
    model = reid.DA2S(5, **SMALL)
    x = _images()
    model((x, x))
    ids1 = {id(v) for v in model.stream1.weights}
    ids2 = {id(v) for v in model.stream2.weights}
    assert ids1 and len(ids1) == len(ids2) and not ids1 & ids2
    # Different inputs per stream give different taps; swapping them changes the output.
    x2 = _images(seed=5)
    assert not np.allclose(model.embed((x, x2)).numpy(), model.embed((x2, x)).numpy())


def test_config_round_trips():
    da2s = reid.DA2S(5, use_se=False, se_reduction=8, **SMALL)
    clone = reid.DA2S.from_config(da2s.get_config())
    assert clone.get_config() == da2s.get_config()
    assert clone.get_config()["use_se"] is False and clone.se is None
    variant = reid.DA2S(5, isdc_se=True, **SMALL)
    clone = reid.DA2S.from_config(variant.get_config())
    assert clone.get_config() == variant.get_config() and len(clone.isdc_se_blocks) == 4
    ide = reid.IDE(9, **SMALL)
    assert reid.IDE.from_config(ide.get_config()).get_config() == ide.get_config()
    for layer in (
        reid.ClassifierHead(11, hidden_units=32, dropout=0.25, name="h"),
        reid.SqueezeExcitation(reduction=4, name="s"),
        reid.ISDCBlock(24, strides=1, name="i"),
    ):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_ide_keras_file_round_trip(tmp_path):
    model = reid.IDE(4, **SMALL)
    x = _images()
    expected = model(x).numpy()
    path = str(tmp_path / "ide.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(x).numpy(), expected, atol=1e-5)


def test_bad_num_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes=0"):
        reid.IDE(0, **SMALL)


@pytest.mark.parametrize("use_isdc, isdc_se", [(True, False), (False, False), (True, True)])
def test_a_checkpoint_restores_every_da2s_weight(tmp_path, use_isdc, isdc_se):
    """What load_reid_model does (tf.train.Checkpoint): every weight, the ISDC convs included, comes back."""
    import tensorflow as tf

    x = _images()
    models = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        model = reid.DA2S(5, use_isdc=use_isdc, isdc_se=isdc_se, **SMALL)
        model((x, x))
        models.append(model)
    saved, restored = models
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=restored).restore(path).expect_partial().assert_existing_objects_matched()
    differing = [w.path for w, v in zip(saved.weights, restored.weights) if not np.array_equal(w.numpy(), v.numpy())]
    assert differing == []
    assert any("isdc4_se" in w.path for w in saved.weights) == isdc_se
    np.testing.assert_allclose(restored.embed((x, x)).numpy(), saved.embed((x, x)).numpy(), atol=1e-6)
