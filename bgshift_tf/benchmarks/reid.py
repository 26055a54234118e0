"""Re-ID train-step speed: IDE and DA-2S in TensorFlow against their PyTorch twins, same networks and steps.

Settings: "demo" (small DenseNet, 128x64, batch 32) and "paper" (DenseNet-121, 256x128, batch 8 to keep the
run short). A DA-2S "image" is one pair (both streams). Each figure is the fastest of `steps` timed train
steps (forward, summed cross-entropy / batch, backward, SGD momentum: `training.reid.make_train_step`) after
one untimed first step (tracing / compiling, reported as first_step_seconds), on fixed random inputs, in:
  * TF "float32", "mixed_bfloat16" (tf.function graphs) and "mixed_bfloat16_xla" (jit_compile=True; both
    reported, "tf_best_mode" says which one pays);
  * PyTorch "float32" and "bf16_autocast" (`torch.autocast("cpu", dtype=torch.bfloat16)`), channels_last
    memory format, torch.set_num_threads(usable cores); the twins (`benchmarks/torch_reid.py`) start from the
    TF float32 model's weights and their parameter counts are checked equal to the Keras models'.
    torch.compile is not used (see BUILD_NOTES / the integrator's report).
FLOPs per image are counted once per model by TF's profiler on the float32 train-step graph (forward and
backward convs and matmuls); each mode's achieved GFLOP/s is that count times its images/s, reported against
the measured bf16 matmul and conv peaks (`measure.peaks`, shared with the SBSGAN benchmark).

`run(quick=True)`: small DenseNet at 64x32, batch 4, one step, no XLA: a smoke run, not a measurement.
"""

import os
import time

import numpy as np
import tensorflow as tf

from bgshift_tf.benchmarks.measure import best_of, fraction_of_peaks, graph_flops, peaks, rounded, seconds_per_call
from bgshift_tf.models.reid import DA2S
from bgshift_tf.training import reid as reid_training

TF_MODES = (("float32", False), ("mixed_bfloat16", False), ("mixed_bfloat16", True))
TORCH_MODES = ("float32", "bf16_autocast")
MODELS = ("ide", "da2s")
SETTINGS = {
    "demo": dict(backbone="densenet_small", image_size=(128, 64), batch_size=32, num_classes=100, steps=5),
    "paper": dict(backbone="densenet121", image_size=(256, 128), batch_size=8, num_classes=751, steps=3),
}
QUICK_SETTING = dict(backbone="densenet_small", image_size=(64, 32), batch_size=4, num_classes=10, steps=1)


def _batch(setting):
    rng = np.random.default_rng(0)
    shape = (setting["batch_size"], *setting["image_size"], 3)
    images = [rng.uniform(-1, 1, shape).astype("float32") for _ in range(2)]
    return {"image": images[0], "stream1": images[0], "stream2": images[1],
            "label": rng.integers(0, setting["num_classes"], setting["batch_size"])}


def _model(kind, setting, precision):
    config = {**reid_training.DEFAULT_CONFIG, "model": kind, "backbone": setting["backbone"],
              "image_height": setting["image_size"][0], "image_width": setting["image_size"][1],
              "precision": precision}
    return reid_training.build_reid_model(config, setting["num_classes"])


def _timed(step, iterations):
    """(first call seconds, fastest of `iterations` further calls) of `step()`."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    return first, seconds_per_call(step, iterations, warmup=0)


def _tf_mode(model, batch, setting, jit_compile):
    """Timing of the trainer's step on `model` and the traced function (for FLOP counting)."""
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    optimizer = reid_training.make_optimizer(0.01, 0.001, decay_step=1000)
    step = tf.function(reid_training.make_train_step(model, optimizer, setting["batch_size"]),
                       jit_compile=jit_compile)
    first, seconds = _timed(lambda: float(step(tensors)["loss"]), setting["steps"])
    return {"first_step_seconds": round(first, 2), "images_per_second": setting["batch_size"] / seconds}, \
        step.get_concrete_function(tensors)


def _torch_mode(torch, torch_reid, model, batch, setting, autocast):
    """Timing of the twin's step, weights copied from the Keras float32 `model`."""
    twin = torch_reid.copy_keras_weights(model, torch_reid.twin_of(model))
    counts = torch_reid.count_parameters(twin)
    if counts[1] != model.count_params():
        raise AssertionError(f"PyTorch twin of {model.name} has {counts[1]} parameters, the Keras model "
                             f"{model.count_params()}: torch_reid no longer mirrors models/reid.py")
    twin = twin.to(memory_format=torch.channels_last)
    names = ("stream1", "stream2") if isinstance(model, DA2S) else ("image",)
    inputs = tuple(torch.from_numpy(batch[k]).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
                   for k in names)
    step = torch_reid.make_train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9), inputs,
                                      torch.from_numpy(batch["label"]), setting["batch_size"], autocast)
    first, seconds = _timed(lambda: float(step().detach()), setting["steps"])
    return {"first_step_seconds": round(first, 2), "images_per_second": setting["batch_size"] / seconds,
            "parameters": counts[1]}


def _with_flop_rates(figures, flops_per_image, measured_peaks):
    """Adds images/s rounding, achieved GFLOP/s and the fractions of the bf16 peaks to one mode's figures."""
    achieved = flops_per_image * figures["images_per_second"]
    return {**figures, "images_per_second": round(figures["images_per_second"], 2),
            "gflops_per_second": round(achieved / 1e9, 1),
            "fraction_of_peak": {peak: v["step"] for peak, v in
                                 fraction_of_peaks({"step": achieved}, measured_peaks).items()}}


def _measure(kind, setting, measured_peaks, torch, torch_reid, quick):
    """One model at one setting: every mode's figures and the ratios between them."""
    batch = _batch(setting)
    tf_figures, flops = {}, None
    for precision, jit_compile in TF_MODES[:2] if quick else TF_MODES:
        mode = f"{precision}_xla" if jit_compile else precision
        print(f"[bench reid] {kind} {setting['backbone']}: TensorFlow {mode} ...", flush=True)
        model = _model(kind, setting, precision)
        tf_figures[mode], function = _tf_mode(model, batch, setting, jit_compile)
        if mode == "float32":
            flops, float32_model = graph_flops(function) / setting["batch_size"], model
    row = {"parameters": int(float32_model.count_params()), "gflops_per_image": round(flops / 1e9, 3),
           "tf": {m: _with_flop_rates(v, flops, measured_peaks) for m, v in tf_figures.items()}}
    rates = {m: {"step": v["images_per_second"]} for m, v in tf_figures.items()}
    tf_best, tf_best_mode = best_of(rates)
    bf16_best, _ = best_of({m: v for m, v in rates.items() if m.startswith("mixed_bfloat16")})
    row.update(tf_best_mode=tf_best_mode["step"], bf16_vs_float32=round(bf16_best["step"] / rates["float32"]["step"], 2))
    if "mixed_bfloat16_xla" in rates:
        row["xla_vs_graph_bf16"] = round(rates["mixed_bfloat16_xla"]["step"] / rates["mixed_bfloat16"]["step"], 2)
    if torch is not None:
        torch_figures = {}
        for mode in TORCH_MODES:
            print(f"[bench reid] {kind} {setting['backbone']}: PyTorch {mode} ...", flush=True)
            torch_figures[mode] = _torch_mode(torch, torch_reid, float32_model, batch, setting,
                                              autocast=mode != "float32")
        row["torch"] = {m: _with_flop_rates(v, flops, measured_peaks) for m, v in torch_figures.items()}
        torch_rates = {m: {"step": v["images_per_second"]} for m, v in torch_figures.items()}
        torch_best, torch_best_mode = best_of(torch_rates)
        row.update(torch_best_mode=torch_best_mode["step"],
                   torch_bf16_vs_float32=round(torch_rates["bf16_autocast"]["step"] / torch_rates["float32"]["step"], 2),
                   tf_vs_torch=round(tf_best["step"] / torch_best["step"], 2))
    return row


def run(quick=False, train_steps=None):
    """Returns {"peaks_gflops", "torch_*", "settings": {name: {"ide"|"da2s": {"tf": {mode: figures},
    "torch": {mode: figures}, "tf_best_mode", "bf16_vs_float32", "xla_vs_graph_bf16", "tf_vs_torch", ...}}}}.

    figures: images_per_second, first_step_seconds, gflops_per_second, fraction_of_peak {matmul_bfloat16,
    conv_bfloat16}. "tf_vs_torch" is TF's best mode / PyTorch's best mode (>= 1: TF at least as fast).
    `train_steps` (bench.py --train_steps) replaces each setting's number of timed steps.
    """
    try:  # PyTorch is optional (the [bench] extra): without it its columns are skipped
        import torch

        from bgshift_tf.benchmarks import torch_reid
    except ImportError:
        torch = torch_reid = None
    settings = {"quick": QUICK_SETTING} if quick else SETTINGS
    if train_steps:
        settings = {name: {**setting, "steps": int(train_steps)} for name, setting in settings.items()}
    measured_peaks = peaks(quick, repeats=1 if quick else 3)
    results = {"peaks_gflops": {k: round(v / 1e9, 1) for k, v in measured_peaks.items()},
               "flops_counted_by": "TF profiler, float32 train-step graph", "settings": {}}
    if torch is None:
        results["torch_note"] = "torch is not installed: PyTorch columns skipped"
    else:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        results.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                       torch_settings="channels_last, eager (no torch.compile)")
    for name, setting in settings.items():
        results["settings"][name] = {
            "backbone": setting["backbone"], "image_size": list(setting["image_size"]),
            "batch_size": setting["batch_size"], "steps": setting["steps"],
            **{kind: _measure(kind, setting, measured_peaks, torch, torch_reid, quick) for kind in MODELS}}
    return results
