"""SBSGAN speed: TensorFlow float32 and mixed_bfloat16 against the same networks and steps in PyTorch
float32 and bf16 autocast, eager NCHW and channels_last, and float32 under torch.compile.

For three settings, "demo64" (configs/gan_demo.flags: 64x32, batch 16, base_filters 32, 2 residual blocks,
D 16 / 5 layers), "demo" (the issue's demo size, 128x64 images and batch 16, with narrow networks: base_filters
16, 2 residual blocks, D width 16 with 5 layers; configs/gan_demo.flags itself now trains at 64x32 with
base_filters 32) and "paper" (256x128, batch 4 to keep it short, base_filters
64, 6 residual blocks, D width 64 with 6 layers), measures images/second of:
  * d_step: one SBSGAN discriminator update (fakes, WGAN critic, real-domain CE, gradient penalty, Adam);
  * g_step: one SBSGAN generator update (mixed soft-mask/style fakes, L_adv, L_cls^f, L_rec, L_idc, L_bgs,
    L_sc with the style transfers of the slot images to the other domains, Adam);
  * inference: the soft-mask branch G(I, D̄) alone;
  * dg_step (TF only): `discriminator_generator_step`, the D and G updates of one batch with the fakes made
    once, which training runs when n_critic = 1; "dg_vs_separate" is its rate over that of d_step then
    g_step (the pair training ran before it), and PyTorch's equivalent is its d_step then g_step.
in TF modes "float32" and "mixed_bfloat16" (`core.precision` policies, tf.function graphs; XLA re-measured
for inference in both and for the bf16 training steps, kept only where it is faster) and PyTorch modes
(TORCH_MODES):
  * "float32" and "bf16_autocast" (`torch.autocast("cpu", dtype=torch.bfloat16)`): eager, NCHW tensors;
  * "float32_channels_last" and "bf16_autocast_channels_last": the same with the networks and the input
    tensors in `torch.channels_last` memory format;
  * "float32_compile": NCHW float32 with each step function wrapped in `torch.compile` (the default
    inductor backend; needs a C++ compiler at run time), compile time kept out of the timed calls by
    COMPILE_WARMUP untimed calls. A step torch.compile cannot run is reported as the reason (a string)
    instead of a rate: with torch 2.13, d_step's gradient penalty (`create_graph=True`, double backward)
    is not supported by aot_autograd. A mode none of whose steps ran is {"error": reason}.
The PyTorch twin (`_torch_networks`, `_torch_rates`) mirrors layer for layer and loss for loss what
`bgshift_tf.models` and `bgshift_tf.training.gan.SBSGAN` do; its columns are skipped with a note when
torch is not installed. FLOPs per image of each step are counted by TF's profiler on the float32 graph
(forward, backward and the gradient penalty's double backprop: every conv, transposed conv and matmul);
achieved FLOP/s of TF's best mode are reported against measured bf16 matmul and conv peaks (`peaks`).

`run(quick=True)` uses tiny sizes and one timed iteration: a smoke test, not a measurement; `run(train_steps=N)`
times N D and G steps per mode instead of the setting's default (bench.py --train_steps).
"""

import keras
import numpy as np
import tensorflow as tf

from bgshift_tf.benchmarks.measure import best_of, fraction_of_peaks, graph_flops, peaks, rounded, seconds_per_call
from bgshift_tf.core.precision import policy_scope
from bgshift_tf.models.discriminator import Discriminator
from bgshift_tf.models.generator import Generator
from bgshift_tf.training.gan import SBSGAN

TF_MODES = ("float32", "mixed_bfloat16")
TORCH_MODES = ("float32", "bf16_autocast", "float32_channels_last", "bf16_autocast_channels_last", "float32_compile")
COMPILE_WARMUP = 3  # untimed calls of a compiled step: compilation, then recompiles once optimizer state exists
STEPS = ("d_step", "g_step", "inference")
TF_STEPS = (*STEPS, "dg_step")

NUM_DOMAINS = 3
SETTINGS = {
    "demo64": dict(image_size=(64, 32), batch_size=16, base_filters=32, num_res_blocks=2, d_base_filters=16,
                   d_layers=5, steps=8, inference_steps=10),
    "demo": dict(image_size=(128, 64), batch_size=16, base_filters=16, num_res_blocks=2, d_base_filters=16,
                 d_layers=5, steps=5, inference_steps=10),
    "paper": dict(image_size=(256, 128), batch_size=4, base_filters=64, num_res_blocks=6, d_base_filters=64,
                  d_layers=6, steps=3, inference_steps=5),
}
QUICK_SETTING = dict(image_size=(32, 16), batch_size=4, base_filters=8, num_res_blocks=1, d_base_filters=8,
                     d_layers=4, steps=1, inference_steps=1)


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


def _tf_model(setting, slots, policy):
    """SBSGAN of `setting` built under the dtype policy `policy`, with the benchmark's Adam optimizers."""
    keras.utils.set_random_seed(0)
    with policy_scope(policy):
        generator = Generator(NUM_DOMAINS, setting["image_size"], setting["base_filters"],
                              setting["num_res_blocks"], upsample=setting.get("upsample", "transposed"))
        discriminator = Discriminator(NUM_DOMAINS, setting["image_size"], setting["d_base_filters"],
                                      setting["d_layers"])
    model = SBSGAN(generator, discriminator, global_batch_size=setting["batch_size"], num_soft_mask=slots)
    model.compile(g_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5),
                  d_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.5))
    return model


def _tf_rates(setting, batch, slots, policy, jit_compile, steps=TF_STEPS):
    """Images/second of TF `steps` (tf.function graphs, XLA-compiled if jit_compile) under `policy`, and the
    FLOPs per image of each (counted on the traced graph)."""
    model = _tf_model(setting, slots, policy)
    size = setting["batch_size"]
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    functions = {
        "d_step": (tf.function(model.discriminator_step, jit_compile=jit_compile), (tensors,), "d_loss"),
        "g_step": (tf.function(model.generator_step, jit_compile=jit_compile), (tensors,), "g_loss"),
        "inference": (tf.function(model.generator.soft_mask, jit_compile=jit_compile), (tensors["image"],), None),
        "dg_step": (tf.function(model.discriminator_generator_step, jit_compile=jit_compile), (tensors,), "g_loss"),
    }
    rates, flops = {}, {}
    for name in steps:
        fn, args, key = functions[name]
        iterations = setting["inference_steps" if key is None else "steps"]
        rates[name] = size / seconds_per_call(lambda: (fn(*args) if key is None else fn(*args)[key]).numpy(),
                                                iterations)
        flops[name] = graph_flops(fn.get_concrete_function(*args)) / size
    return rates, flops


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


def _torch_options(mode):
    """(autocast, channels_last, compiled) of a TORCH_MODES name."""
    return mode.startswith("bf16_autocast"), mode.endswith("_channels_last"), mode.endswith("_compile")


def _torch_rate(torch, step, batch_size, iterations, compiled):
    """Images/second of `step()`; if `compiled`, of `torch.compile(step)` after COMPILE_WARMUP untimed calls,
    or, when torch.compile fails on it (no C++ compiler, an unsupported op...), the reason as a string."""
    if not compiled:
        return batch_size / seconds_per_call(step, iterations)
    try:
        return batch_size / seconds_per_call(torch.compile(step), iterations, warmup=COMPILE_WARMUP)
    except Exception as error:  # any compile failure is a result of the mode, never a crash of the bench
        first_line = str(error).strip().partition("\n")[0]
        return f"{type(error).__name__}: {first_line}"[:200]


def _torch_rates(torch, setting, batch, slots, mode):
    """Images/second of the PyTorch twin's d_step, g_step and inference (same losses and normalisers) in the
    TORCH_MODES `mode`: bf16_autocast runs the forward passes and losses under
    `torch.autocast("cpu", dtype=torch.bfloat16)`, channels_last converts the networks and input tensors to
    `torch.channels_last`, compile wraps each step in `torch.compile` (a step it fails on gives the reason
    instead of a rate; a mode none of whose steps ran, {"error": reason})."""
    autocast, channels_last, compiled = _torch_options(mode)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if compiled:
        torch.compiler.reset()  # a fresh cache per setting: no recompile limit across settings
    torch.manual_seed(0)
    generator, discriminator = (net.to(memory_format=layout) for net in _torch_networks(torch, setting))
    g_opt = torch.optim.Adam(generator.parameters(), 1e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999))
    f = torch.nn.functional
    x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(memory_format=layout)
    m = torch.from_numpy(batch["mask"]).permute(0, 3, 1, 2).contiguous(memory_format=layout)
    s, t = torch.from_numpy(batch["domain"]), torch.from_numpy(batch["target_domain"])
    slot, alpha = torch.from_numpy(batch["soft_mask_slot"]), torch.from_numpy(batch["gp_alpha"])
    n = setting["batch_size"]
    k = NUM_DOMAINS

    def per_example(v):
        return v.flatten(1).mean(1)

    def hard_mask(images, masks):
        return (images + 1) * masks - 1

    def in_precision(step):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return step()
        return run

    @in_precision
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

    @in_precision
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

    @in_precision
    def inference():
        with torch.no_grad():
            return generator.soft_mask(x)  # returned: torch.compile would drop an unused result's computation

    iterations = {"d_step": setting["steps"], "g_step": setting["steps"], "inference": setting["inference_steps"]}
    rates = {name: _torch_rate(torch, step, n, iterations[name], compiled)
             for name, step in (("d_step", d_step), ("g_step", g_step), ("inference", inference))}
    if all(isinstance(rate, str) for rate in rates.values()):
        return {"error": rates["inference"]}
    return rates


def _measured(rates):
    """The steps of a PyTorch mode that have a rate (not a reason why they did not run)."""
    return {step: rate for step, rate in rates.items() if isinstance(rate, float)}


def run(quick=False, train_steps=None):
    """Returns {"peaks_gflops": ..., "settings": {name: {"tf": {mode: rates}, "torch": {mode: rates}, ...}}}.

    Rates are images/second. "tf" holds the graph modes, "tf_xla" the XLA-compiled ones (inference in both
    precisions, training steps in mixed_bfloat16; skipped when quick); "tf_best"/"torch_best" the fastest
    mode per step and "tf_best_mode"/"torch_best_mode" which one, of the modes with a rate for that step (a
    "torch" step may instead be a string, why it did not run, and a whole mode {"error": reason});
    "bf16_vs_float32" TF mixed_bfloat16 (best of graph and XLA) / TF float32; "tf_vs_torch" tf_best /
    torch_best (>= 1 means TF is at least as fast);
    "gflops_per_image" each step's FLOPs; "tf_best_gflops_per_second" and its fraction of each bf16 peak.
    """
    try:
        import torch
    except ImportError:
        torch = None
    settings = {"quick": QUICK_SETTING} if quick else SETTINGS
    if train_steps:
        settings = {name: {**setting, "steps": int(train_steps)} for name, setting in settings.items()}
    measured_peaks = peaks(quick, repeats=1 if quick else 3)
    results = {
        "peaks_gflops": {k: round(v / 1e9, 1) for k, v in measured_peaks.items()},
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
        batch, slots = _batch(setting)
        row = {"image_size": list(setting["image_size"]), "batch_size": setting["batch_size"],
               "base_filters": setting["base_filters"], "num_res_blocks": setting["num_res_blocks"],
               "d_base_filters": setting["d_base_filters"], "d_layers": setting["d_layers"],
               "num_soft_mask": slots, "tf": {}}
        columns, counted = {}, {}
        for policy in TF_MODES:
            print(f"[bench gan] {name}: TensorFlow {policy} ...", flush=True)
            columns[policy], counted[policy] = _tf_rates(setting, batch, slots, policy, jit_compile=False)
            row["tf"][policy] = rounded(columns[policy])
            separate = 1.0 / (1.0 / columns[policy]["d_step"] + 1.0 / columns[policy]["g_step"])
            row.setdefault("dg_vs_separate", {})[policy] = round(columns[policy]["dg_step"] / separate, 2)
        if not quick:  # XLA compiles for tens of seconds to minutes: not part of the smoke run
            row["tf_xla"] = {}
            for policy, steps in (("float32", ("inference",)), ("mixed_bfloat16", STEPS)):
                print(f"[bench gan] {name}: TensorFlow {policy} XLA {steps} ...", flush=True)
                rates, _ = _tf_rates(setting, batch, slots, policy, jit_compile=True, steps=steps)
                columns[f"{policy}_xla"] = rates
                row["tf_xla"][policy] = rounded(rates)
        tf_best, row["tf_best_mode"] = best_of(columns)
        row["tf_best"] = rounded(tf_best)
        bf16_best, _ = best_of({k: v for k, v in columns.items() if k.startswith("mixed_bfloat16")})
        row["bf16_vs_float32"] = {k: round(bf16_best[k] / columns["float32"][k], 2) for k in STEPS if k in bf16_best}
        print(f"[bench gan] {name}: tf {row['tf']} xla {row.get('tf_xla')}", flush=True)
        if torch is not None:
            torch_columns = {}
            for mode in TORCH_MODES:
                print(f"[bench gan] {name}: PyTorch {mode} ...", flush=True)
                torch_columns[mode] = _torch_rates(torch, setting, batch, slots, mode)
            row["torch"] = {mode: {**rates, **rounded(_measured(rates))} for mode, rates in torch_columns.items()}
            torch_columns = {mode: _measured(rates) for mode, rates in torch_columns.items()}
            for rates in torch_columns.values():
                if "d_step" in rates and "g_step" in rates:
                    rates["dg_step"] = 1.0 / (1.0 / rates["d_step"] + 1.0 / rates["g_step"])
            torch_best, row["torch_best_mode"] = best_of(torch_columns)
            row["torch_best"] = rounded(torch_best)
            row["tf_vs_torch"] = {k: round(tf_best[k] / torch_best[k], 2) for k in TF_STEPS}
            print(f"[bench gan] {name}: torch {row['torch']}", flush=True)
        flops = counted["float32"]  # the bf16 graph adds only casts
        row["gflops_per_image"] = {k: round(v / 1e9, 3) for k, v in flops.items()}
        achieved = {k: flops[k] * tf_best[k] for k in TF_STEPS}
        row["tf_best_gflops_per_second"] = {k: round(v / 1e9, 1) for k, v in achieved.items()}
        row["tf_best_fraction_of_peak"] = fraction_of_peaks(achieved, measured_peaks)
        results["settings"][name] = row
    return results
