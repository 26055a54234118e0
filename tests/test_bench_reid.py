"""The PyTorch twins of the re-ID benchmark: same parameter counts as our Keras models, and one train step from
the same weights gives TF's loss (float32). Skipped without torch (the bench extra)."""

import numpy as np
import pytest
import tensorflow as tf

from bgshift_tf.training import reid as reid_training

torch = pytest.importorskip("torch")
torch_reid = pytest.importorskip("bgshift_tf.benchmarks.torch_reid")


def _model(kind, backbone, image_size, num_classes=10):
    config = {**reid_training.DEFAULT_CONFIG, "model": kind, "backbone": backbone,
              "image_height": image_size[0], "image_width": image_size[1]}
    return reid_training.build_reid_model(config, num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ide", "da2s"])
def test_twin_parameter_counts_equal_the_keras_densenet121_models(kind):
    model = _model(kind, "densenet121", (256, 128), num_classes=751)
    trainable, total = torch_reid.count_parameters(torch_reid.twin_of(model))
    assert trainable == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert total == model.count_params()


@pytest.mark.parametrize("kind", ["ide", "da2s"])
def test_twin_train_steps_from_equal_weights_give_tf_losses(kind):
    batch_size, num_classes = 4, 10
    model = _model(kind, "densenet_small", (32, 32), num_classes)
    model.head.drop.rate = 0.0  # dropout masks cannot match across frameworks
    twin = torch_reid.copy_keras_weights(model, torch_reid.twin_of(model, dropout=0.0))
    rng = np.random.default_rng(0)
    images = [rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype("float32") for _ in range(2)]
    labels = rng.integers(0, num_classes, batch_size)
    batch = {"image": tf.constant(images[0]), "stream1": tf.constant(images[0]), "stream2": tf.constant(images[1]),
             "label": tf.constant(labels)}
    tf_step = reid_training.make_train_step(
        model, reid_training.make_optimizer(0.01, 0.01, decay_step=100, momentum=0.9), batch_size)
    inputs = tuple(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for x in images)
    torch_step = torch_reid.make_train_step(
        twin, torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9), inputs[:2 if kind == "da2s" else 1],
        torch.from_numpy(labels), batch_size, autocast=False)
    tf_losses = [float(tf_step(batch)["loss"]) for _ in range(2)]
    torch_losses = [float(torch_step().detach()) for _ in range(2)]
    # The first step's loss is the forward pass from equal weights: float32 rounding apart, equal.
    np.testing.assert_allclose(torch_losses[0], tf_losses[0], rtol=1e-5)
    # After one SGD update the loss moved by far more than the two frameworks differ. The tolerance is
    # looser: the gradients of the first dense block and transition differ by a few percent between TF and
    # torch (the later layers' agree to 1e-5; found by this test, not yet explained).
    assert abs(tf_losses[1] - tf_losses[0]) > 2e-2
    np.testing.assert_allclose(torch_losses[1], tf_losses[1], atol=2e-3)
