"""SBSGAN speed: TensorFlow (graph and XLA) against the same networks and steps written in PyTorch.

For two settings, "demo" (the issue's demo size, 128x64 images and batch 16, with narrow networks: base_filters
16, 2 residual blocks, D width 16 with 5 layers; configs/gan_demo.flags itself now trains at 64x32 with
base_filters 32) and "paper" (256x128, batch 4 to keep it short, base_filters
64, 6 residual blocks, D width 64 with 6 layers), measures images/second of:
  * d_step: one SBSGAN discriminator update (fakes, WGAN critic, real-domain CE, gradient penalty, Adam);
  * g_step: one SBSGAN generator update (mixed soft-mask/style fakes, L_adv, L_cls^f, L_rec, L_idc, L_bgs,
    L_sc with the style transfers of the slot images to the other domains, Adam);
  * inference: the soft-mask branch G(I, D̄) alone (graph, and XLA-compiled).
The PyTorch twin (`_torch_networks`, `_torch_steps`) mirrors layer for layer and loss for loss what
`bgshift_tf.models` and `bgshift_tf.training.gan.SBSGAN` do; its columns are skipped with a note when
torch is not installed. Also reports the generator's inference FLOP/s (multiply-adds counted from the
layer shapes, x2) as a fraction of a measured float32 GEMM peak (tf.matmul).

`run(quick=True)` uses tiny sizes and one timed iteration: a smoke test, not a measurement.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from bgshift_tf.models.discriminator import Discriminator
from bgshift_tf.models.generator import Generator
from bgshift_tf.training.gan import SBSGAN

NUM_DOMAINS = 3
SETTINGS = {
    "demo": dict(image_size=(128, 64), batch_size=16, base_filters=16, num_res_blocks=2, d_base_filters=16,
                 d_layers=5, steps=5, inference_steps=10),
    "paper": dict(image_size=(256, 128), batch_size=4, base_filters=64, num_res_blocks=6, d_base_filters=64,
                  d_layers=6, steps=3, inference_steps=5),
}
QUICK_SETTING = dict(image_size=(32, 16), batch_size=4, base_filters=8, num_res_blocks=1, d_base_filters=8,
                     d_layers=4, steps=1, inference_steps=1)


def _seconds_per_call(fn, iterations, warmup=1):
    """Fastest wall time of `fn()` over `iterations` calls after `warmup` untimed calls (tracing, caches).

    The minimum, not the mean: other jobs share this machine, and the fastest call is the one least
    disturbed by them (timeit's rule).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def generator_inference_flops(generator):
    """FLOPs (2 x multiply-adds) of one soft-mask forward pass of one image: encoder + one branch."""
    macs = 0
    for layer in generator.encoder.layers + generator.soft_mask_branch.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, _ = layer.input.shape  # each input pixel scatters a full kernel
            macs += height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            macs += height * width * int(np.prod(layer.kernel.shape))
    return 2 * macs


def gemm_flops_per_second(size, repeats=3):
    """Measured float32 tf.matmul FLOP/s on [size, size] x [size, size] (best of `repeats`)."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul()
    return 2.0 * size**3 / _seconds_per_call(lambda: float(matmul()), repeats)


def _batch(setting, seed=0):
    """A global batch with the SBSGAN fields: K+1 soft-mask slots (at most half the batch)."""
    rng = np.random.default_rng(seed)
    size, height, width = setting["batch_size"], *setting["image_size"]
    domain = rng.integers(0, NUM_DOMAINS, size)
    slots = min(NUM_DOMAINS + 1, size // 2)
    return {
        "image": rng.uniform(-1, 1, (size, height, width, 3)).astype("float32"),
        "mask": (rng.uniform(size=(size, height, width, 1)) > 0.5).astype("float32"),
        "domain": domain,
        "target_domain": (domain + rng.integers(1, NUM_DOMAINS, size)) % NUM_DOMAINS,
        "soft_mask_slot": (np.arange(size) < slots).astype("float32"),
        "gp_alpha": rng.uniform(size=size).astype("float32"),
    }, slots


def _tf_rates(setting, batch, slots, jit_compile):
    """Images/second of TF d_step, g_step (tf.function graphs) and inference (graph, or XLA if jit_compile).

    XLA is tried on inference only: compiling the training steps (double backprop of the gradient penalty,
    L_sc's extra passes) took minutes and over 6 GB here, more than a benchmark should spend.
    """
    keras.utils.set_random_seed(0)
    generator = Generator(NUM_DOMAINS, setting["image_size"], setting["base_filters"], setting["num_res_blocks"])
    size = setting["batch_size"]
    images = tf.constant(batch["image"])
    infer = tf.function(generator.soft_mask, jit_compile=jit_compile)
    rates = {"inference": size / _seconds_per_call(lambda: infer(images).numpy(), setting["inference_steps"])}
    if jit_compile:
        return rates, generator
    discriminator = Discriminator(NUM_DOMAINS, setting["image_size"], setting["d_base_filters"], setting["d_layers"])
    model = SBSGAN(generator, discriminator, global_batch_size=size, num_soft_mask=slots)
    model.compile(g_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5),
                  d_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5))
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    d_step = tf.function(model.discriminator_step)
    g_step = tf.function(model.generator_step)
    rates["d_step"] = size / _seconds_per_call(lambda: float(d_step(tensors)["d_loss"]), setting["steps"])
    rates["g_step"] = size / _seconds_per_call(lambda: float(g_step(tensors)["g_loss"]), setting["steps"])
    return rates, generator


def _torch_networks(torch, setting):
    """PyTorch twins of Generator and Discriminator (NCHW, same layers, padding and norms)."""
    nn = torch.nn
    filters, blocks, k = setting["base_filters"], setting["num_res_blocks"], NUM_DOMAINS
    d_filters = setting["d_base_filters"]

    def conv_norm_relu(cin, cout, kernel, stride, padding):
        return [nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                nn.InstanceNorm2d(cout, eps=1e-5, affine=True), nn.ReLU()]

    class ResidualBlock(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.body = nn.Sequential(*conv_norm_relu(channels, channels, 3, 1, 1),
                                      nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                      nn.InstanceNorm2d(channels, eps=1e-5, affine=True))

        def forward(self, x):
            return x + self.body(x)

    def decoder():
        layers = []
        for cin, cout in ((4 * filters, 2 * filters), (2 * filters, filters)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       nn.InstanceNorm2d(cout, eps=1e-5, affine=True), nn.ReLU()]
        return nn.Sequential(*layers, nn.Conv2d(filters, 3, 7, 1, 3), nn.Tanh())

    class TorchGenerator(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(
                *conv_norm_relu(3 + k, filters, 7, 1, 3),
                *conv_norm_relu(filters, 2 * filters, 4, 2, 1),
                *conv_norm_relu(2 * filters, 4 * filters, 4, 2, 1),
                *[ResidualBlock(4 * filters) for _ in range(blocks)],
            )
            self.soft_mask_branch = decoder()
            self.style_branch = decoder()

        def encode(self, images, indicator):
            tiled = indicator[:, :, None, None].expand(-1, -1, *images.shape[2:])
            return self.encoder(torch.cat([images, tiled], dim=1))

        def style_transfer(self, images, domains):
            indicator = nn.functional.one_hot(domains, k).float()
            return self.style_branch(self.encode(images, indicator))

        def soft_mask(self, images):
            return self.soft_mask_branch(self.encode(images, torch.full((images.shape[0], k), 1.0 / k)))

        def generate(self, images, targets, slot):
            use_soft = slot[:, None] > 0
            indicator = torch.where(use_soft, torch.full((images.shape[0], k), 1.0 / k),
                                    nn.functional.one_hot(targets, k).float())
            features = self.encode(images, indicator)
            return torch.where(use_soft[:, :, None, None], self.soft_mask_branch(features),
                               self.style_branch(features))

    class TorchDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [], 3
            for i in range(setting["d_layers"]):
                layers += [nn.Conv2d(cin, d_filters * 2**i, 4, 2, 1), nn.LeakyReLU(0.01)]
                cin = d_filters * 2**i
            self.trunk = nn.Sequential(*layers)
            scale = 2 ** setting["d_layers"]
            height, width = setting["image_size"]
            self.patch_head = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
            self.domain_head = nn.Conv2d(cin, k, (height // scale, width // scale), bias=False)

        def forward(self, images):
            x = self.trunk(images)
            return self.patch_head(x), self.domain_head(x).flatten(1)

    return TorchGenerator(), TorchDiscriminator()


def _torch_rates(torch, setting, batch, slots):
    """Images/second of the PyTorch twin's d_step, g_step and inference (same losses and normalisers)."""
    torch.manual_seed(0)
    generator, discriminator = _torch_networks(torch, setting)
    g_opt = torch.optim.Adam(generator.parameters(), 1e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999))
    f = torch.nn.functional
    x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous()
    m = torch.from_numpy(batch["mask"]).permute(0, 3, 1, 2).contiguous()
    s, t = torch.from_numpy(batch["domain"]), torch.from_numpy(batch["target_domain"])
    slot, alpha = torch.from_numpy(batch["soft_mask_slot"]), torch.from_numpy(batch["gp_alpha"])
    n = setting["batch_size"]
    k = NUM_DOMAINS

    def per_example(v):
        return v.flatten(1).mean(1)

    def hard_mask(images, masks):
        return (images + 1) * masks - 1

    def d_step():
        with torch.no_grad():
            fakes = generator.generate(x, t, slot)
        real_patch, real_domain = discriminator(x)
        adv = per_example(discriminator(fakes)[0]) - per_example(real_patch)
        cls = f.cross_entropy(real_domain, s, reduction="none")
        mixed = (alpha[:, None, None, None] * x + (1 - alpha[:, None, None, None]) * fakes).requires_grad_(True)
        grads, = torch.autograd.grad(discriminator(mixed)[0].sum(), mixed, create_graph=True)
        gp = (grads.flatten(1).norm(dim=1) - 1) ** 2
        loss = (adv + cls + 10 * gp).sum() / n
        d_opt.zero_grad()
        loss.backward()
        d_opt.step()

    def g_step():
        fakes = generator.generate(x, t, slot)
        patch, domain_logits = discriminator(fakes)
        targets = torch.where(slot[:, None] > 0, torch.full((n, k), 1.0 / k), f.one_hot(t, k).float())
        cls = -(targets * f.log_softmax(domain_logits, dim=1)).sum(1)
        rec = per_example((generator.style_transfer(fakes, s) - x).abs())
        idc = per_example((fakes - x).abs()) * (1 - slot)
        bgs = per_example((hard_mask(x, m) - fakes) ** 2) * slot
        index = torch.argsort(slot, descending=True, stable=True)[:slots]
        picked, picked_masks, soft = x[index], m[index], fakes[index]
        others = generator.style_transfer(picked.repeat(k - 1, 1, 1, 1),
                                          ((s[index][None] + torch.arange(1, k)[:, None]) % k).flatten())
        others = hard_mask(others.view(k - 1, slots, *x.shape[1:]), picked_masks[None])
        sc = (per_example((soft - hard_mask(picked, picked_masks)).abs())
              + (soft[None] - others).abs().flatten(2).mean(2).sum(0)) * slot[index]
        loss = ((-per_example(patch) + cls + 10 * rec).sum() / n + 5 * idc.sum() / (n - slots)
                + 5 * bgs.sum() / slots + 5 * sc.sum() / slots)
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()

    def inference():
        with torch.no_grad():
            generator.soft_mask(x)

    return {
        "d_step": n / _seconds_per_call(d_step, setting["steps"]),
        "g_step": n / _seconds_per_call(g_step, setting["steps"]),
        "inference": n / _seconds_per_call(inference, setting["inference_steps"]),
    }


def _rounded(rates):
    return {k: round(v, 2) for k, v in rates.items()}


def run(quick=False):
    """Returns {"settings": {name: {"tf": ..., "tf_xla": ..., "torch": ..., ...}}, "gemm_gflops": ..., ...}.

    Rates are images/second. "tf_xla" is inference compiled with XLA (skipped when quick); "tf_best" takes
    the faster of graph and XLA; "tf_vs_torch" is tf_best / torch (>= 1 means TF is at least as fast).
    """
    try:
        import torch
    except ImportError:
        torch = None
    settings = {"quick": QUICK_SETTING} if quick else SETTINGS
    gemm = gemm_flops_per_second(512 if quick else 4096, repeats=1 if quick else 3)
    results = {
        "gemm_gflops": round(gemm / 1e9, 1),
        "gemm_size": 512 if quick else 4096,
        "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "settings": {},
    }
    if torch is None:
        results["torch_note"] = "torch is not installed: PyTorch columns skipped"
    else:
        results["torch_version"] = torch.__version__
        results["torch_threads"] = torch.get_num_threads()
    for name, setting in settings.items():
        print(f"[bench gan] {name}: TensorFlow graph, XLA, then PyTorch ...", flush=True)
        batch, slots = _batch(setting)
        row = {"image_size": list(setting["image_size"]), "batch_size": setting["batch_size"],
               "base_filters": setting["base_filters"], "num_res_blocks": setting["num_res_blocks"],
               "d_base_filters": setting["d_base_filters"], "d_layers": setting["d_layers"],
               "num_soft_mask": slots}
        graph, generator = _tf_rates(setting, batch, slots, jit_compile=False)
        row["tf"] = _rounded(graph)
        best = dict(graph)
        if not quick:  # XLA compiles for tens of seconds: not part of the smoke run
            xla, _ = _tf_rates(setting, batch, slots, jit_compile=True)
            best["inference"] = max(graph["inference"], xla["inference"])
            row["tf_xla"] = _rounded(xla)
        row["tf_best"] = _rounded(best)
        print(f"[bench gan] {name}: tf {row['tf']} xla {row.get('tf_xla')}", flush=True)
        if torch is not None:
            torch_rates = _torch_rates(torch, setting, batch, slots)
            row["torch"] = _rounded(torch_rates)
            row["tf_vs_torch"] = {k: round(best[k] / torch_rates[k], 2) for k in best}
            print(f"[bench gan] {name}: torch {row['torch']}", flush=True)
        flops = generator_inference_flops(generator)
        achieved = flops * best["inference"]
        row.update(
            inference_gflops_per_image=round(flops / 1e9, 3),
            inference_gflops_per_second=round(achieved / 1e9, 1),
            inference_fraction_of_gemm_peak=round(achieved / gemm, 3),
        )
        results["settings"][name] = row
    return results
