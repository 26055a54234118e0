"""Where an SBSGAN training step's time goes: the TF profiler's op events of a few traced steps, by op class.

    python -m bgshift_tf.benchmarks.gan_profile [--profile_setting=demo64] [--profile_step=dg_step] [--profile_upsample=nearest]
        [--profile_intra_op=2 --profile_inter_op=1]   # TF's thread pools (0 = TF's default: all cores)

Builds the benchmark's SBSGAN (`benchmarks.gan`: its settings, batch and Adam optimizers), warms the step's
graph up, traces `--profile_steps` calls with `tf.profiler.experimental`, and sums the host CPU plane's op events
(XSpace, read with TF's own xplane proto; the executor threads' op events, oneDNN's `_Mkl` prefixes dropped)
by op type, then by the classes below. Also times `--profile_timed_steps` untraced calls (the fastest, as
`benchmarks.measure.seconds_per_call`: the profiler's own overhead left out), which is the figure to compare
thread settings by. Prints a table and writes
JSON (`--profile_out`; flag names prefixed so that
they cannot collide with train_gan's `--upsample` when both modules are imported). Op time is the events' own duration summed over the executor's threads: with 2 cores and
inter-op parallelism the sum can exceed the wall time of the steps, and shares are of that sum.
"""

import collections
import glob
import json
import os
import re
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from bgshift_tf.benchmarks import gan as gan_bench
from bgshift_tf.benchmarks.measure import seconds_per_call
from bgshift_tf.core import atomic_io
from bgshift_tf.training.strategy import configure_threads
from bgshift_tf.workflow import provenance

_SETTING = flags.DEFINE_enum("profile_setting", "demo64", list(gan_bench.SETTINGS), "Benchmark setting (sizes, widths).")
_STEP = flags.DEFINE_enum("profile_step", "dg_step", ["d_step", "g_step", "dg_step"], "The SBSGAN step profiled.")
_UPSAMPLE = flags.DEFINE_enum("profile_upsample", "transposed", ["transposed", "nearest", "bilinear"],
                              "Generator upsampling (configs/gan_demo.flags: nearest).")
_STEPS = flags.DEFINE_integer("profile_steps", 5, "Traced step calls.", lower_bound=1)
_TIMED = flags.DEFINE_integer("profile_timed_steps", 5, "Untraced step calls timed (the fastest is reported).",
                              lower_bound=1)
_INTRA = flags.DEFINE_integer("profile_intra_op", 0, "TF intra-op threads (0 = TF's default).", lower_bound=0)
_INTER = flags.DEFINE_integer("profile_inter_op", 0, "TF inter-op threads (0 = TF's default).", lower_bound=0)
_OUT = flags.DEFINE_string("profile_out", "runs/gan_profile.json", "Result JSON.")

# op class -> op types (the profiler's event names end in ":<OpType>"); the rest is "other".
OP_CLASSES = {
    "conv forward": ("Conv2D", "FusedConv2D", "DepthwiseConv2dNative"),
    "conv backward (input)": ("Conv2DBackpropInput",),  # also the forward pass of a transposed conv
    "conv backward (filter)": ("Conv2DBackpropFilter", "Conv2DBackpropFilterWithBias"),
    "gradient sums (AddN)": ("AddN",),
    # instance norm's moments and normalisation and their gradients are most of these (the GP's double
    # backprop adds products of its own); the op names alone cannot split them further
    "elementwise + moments (instance norm, GP)": (
        "Mean", "SquaredDifference", "Rsqrt", "RsqrtGrad", "Sub", "Mul", "AddV2", "Add", "Sum", "Square",
        "BroadcastTo", "Tile", "StopGradient", "Reciprocal"),
    "activations": ("Relu", "ReluGrad", "LeakyRelu", "LeakyReluGrad", "Tanh", "TanhGrad", "Sigmoid"),
    "resize / pad / concat / reshape": ("ResizeNearestNeighbor", "ResizeNearestNeighborGrad", "ResizeBilinear",
                                        "ResizeBilinearGrad", "Pad", "PadV2", "MirrorPad", "ConcatV2",
                                        "Reshape", "Transpose", "Slice", "StridedSlice", "StridedSliceGrad",
                                        "Pack", "Unpack", "GatherV2", "Select", "SelectV2"),
    "optimizer (Adam)": ("ResourceApplyAdam", "AssignSubVariableOp", "AssignAddVariableOp", "AssignVariableOp",
                         "ReadVariableOp", "Sqrt", "RealDiv", "Pow"),
    "losses / reductions": ("Abs", "SoftmaxCrossEntropyWithLogits", "LogSoftmax", "Softmax", "Max", "Min",
                            "Prod", "Neg", "Exp", "Log", "Log1p", "Maximum", "Minimum", "Sign"),
}
_CLASS_OF = {op: name for name, ops in OP_CLASSES.items() for op in ops}


def _op_type(event_name):
    """'d/down3_conv/BiasAdd:_MklNativeFusedConv2D' -> 'FusedConv2D' (oneDNN's prefixes dropped), None for
    the executor's own events (no ':')."""
    if ":" not in event_name or "::" in event_name:
        return None
    return re.sub(r"^_(MklNative|Mkl)", "", event_name.rsplit(":", 1)[-1])


def op_times(trace_dir):
    """{op type: (total microseconds, count)} of the host plane's TF op events in one profiler trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}/plugins/profile")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads; Eigen's are inside their ops
                continue
            for event in line.events:
                op = _op_type(plane.event_metadata[event.metadata_id].name)
                if op is None:
                    continue
                entry = totals[op]
                entry[0] += event.duration_ps / 1e6
                entry[1] += 1
    return {op: tuple(v) for op, v in totals.items()}


def classify(times):
    """{op class: share of the summed op time}, and the summed time in ms."""
    total = sum(t for t, _ in times.values()) or 1.0
    shares = collections.Counter()
    for op, (micros, _) in times.items():
        shares[_CLASS_OF.get(op, "other")] += micros / total
    return dict(shares.most_common()), total / 1e3


def profile(setting_name, step, upsample, steps, timed_steps=5):
    """The profile of `steps` calls of SBSGAN `step` in benchmark setting `setting_name`, and the fastest of
    `timed_steps` untraced calls."""
    setting = {**gan_bench.SETTINGS[setting_name], "upsample": upsample}
    batch, slots = gan_bench._batch(setting)
    model = gan_bench._tf_model(setting, slots, "float32")
    tensors = {k: tf.constant(v) for k, v in batch.items()}
    fn = tf.function({"d_step": model.discriminator_step, "g_step": model.generator_step,
                      "dg_step": model.discriminator_generator_step}[step])
    def call():
        tf.nest.map_structure(lambda t: t.numpy(), fn(tensors))

    for _ in range(3):  # trace, then let oneDNN pick its kernels
        call()
    fastest = seconds_per_call(call, timed_steps, warmup=0)
    trace_dir = tempfile.mkdtemp(prefix="gan_profile_")
    tf.profiler.experimental.start(trace_dir)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    times = op_times(trace_dir)
    shares, op_ms = classify(times)
    top = sorted(times.items(), key=lambda kv: -kv[1][0])[:15]
    return {"setting": setting_name, "step": step, "upsample": upsample, "batch_size": setting["batch_size"],
            "image_size": list(setting["image_size"]), "traced_steps": steps, "wall_ms_per_step": round(wall * 1e3, 1),
            "untraced_fastest_ms_per_step": round(fastest * 1e3, 1), "timed_steps": timed_steps,
            "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
            "op_ms_per_step": round(op_ms / steps, 1), "class_shares": {k: round(v, 3) for k, v in shares.items()},
            "top_ops": [{"op": op, "ms_per_step": round(t / 1e3 / steps, 2), "count_per_step": c // steps}
                        for op, (t, c) in top],
            "cpu": provenance.this_cpu()}


def main(argv):
    del argv
    configure_threads(_INTRA.value, _INTER.value)  # before the first op: TF fixes its pools when it starts
    result = profile(_SETTING.value, _STEP.value, _UPSAMPLE.value, _STEPS.value, _TIMED.value)
    print(f"{result['step']} {result['setting']} ({result['upsample']}, threads intra {_INTRA.value} / inter "
          f"{_INTER.value}): {result['untraced_fastest_ms_per_step']} ms a step (fastest untraced), "
          f"{result['wall_ms_per_step']} ms wall traced, {result['op_ms_per_step']} ms of op time per step on "
          f"{result['cpu']}")
    for name, share in result["class_shares"].items():
        print(f"  {share:6.1%}  {name}")
    for row in result["top_ops"]:
        print(f"  {row['ms_per_step']:8.2f} ms  x{row['count_per_step']:<4d} {row['op']}")
    atomic_io.write_json(_OUT.value, result)
    print(f"profile: {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
