"""Every entry point tried as a careless user would (issue 25): a flag of the wrong type or range, an enum
value not in its choices, a missing input path, an output path that is a file (or a folder where a file
goes), a flagfile that is missing or includes itself. Each must end in one line naming the flag or path,
exit status 2, before anything is written.

One subprocess per entry point (importing it costs TensorFlow's import, ~5 s): it runs all that entry
point's cases through `errors.run(main)`, exactly as `python -m bgshift_tf.<name>` does, resetting the
flags between cases, and reports each case's exit status and stderr as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_DRIVER = """
import contextlib, importlib, io, json, os, sys, traceback
from absl import flags
from bgshift_tf.core import errors
name, cases = sys.argv[1], json.loads(sys.argv[2])
module = importlib.import_module("bgshift_tf." + name)
if len(sys.argv) > 3:  # "attribute of the entry point module" replaced by a function raising a plain bug
    def _bug(*args, **kwargs):
        raise RuntimeError("a bug in our code")
    setattr(module, sys.argv[3], _bug)
exec(os.environ.get("CARELESS_PRELUDE", ""))  # test set-up run with `module` imported (see run_cases)
results = []
for argv in cases:
    flags.FLAGS.unparse_flags()
    sys.argv = [name, *argv]
    err = io.StringIO()
    code = None
    with contextlib.redirect_stderr(err):
        try:
            errors.run(module.main, name)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        except BaseException:
            code = "exception"
            traceback.print_exc()
    results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
print("RESULTS " + json.dumps(results))
"""


def run_cases(name, cases, timeout=300, bug_in=None, prelude=""):
    """[{argv, code, stderr}] of `cases` (argv lists) run through entry point `name` in one subprocess;
    `bug_in`: name of a function the entry point calls, replaced by one raising RuntimeError; `prelude`:
    Python code run once the entry point is imported as `module` (e.g. to inject a stand-in model)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3", "CARELESS_PRELUDE": prelude}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_DRIVER), name, json.dumps(cases),
                           *([bug_in] if bug_in else [])],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, f"driver failed:\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("careless")
    existing = root / "existing"
    for sub in ("a", "b", "run"):
        (existing / sub).mkdir(parents=True)
    (existing / "a" / "part-0.tfrecord").write_bytes(b"")
    (existing / "image.jpg").write_bytes(b"")
    (root / "a_file").write_text("not a folder")
    return {
        "ROOT": str(root), "DIR": str(existing / "a"), "DIR2": str(existing / "b"), "RUN": str(existing / "run"),
        "IMG": str(existing / "image.jpg"), "FILE": str(root / "a_file"), "MISSING": str(root / "missing"),
        "NEW": str(root / "out" / "new"),
    }


def _fill(argv, paths):
    out = []
    for arg in argv:
        for key in sorted(paths, key=len, reverse=True):
            arg = arg.replace("{" + key + "}", paths[key])
        out.append(arg)
    return out


# entry point: (base argv valid before any work, [(bad args, what the one line must name)])
_CASES = {
    "build_tfrecords": (["--dataset=market1501", "--data_dir={DIR}", "--out_dir={NEW}"], [
        (["--num_shards=0"], "--num_shards"),
        (["--num_shards=two"], "--num_shards"),
        (["--dataset=market"], "--dataset"),
        (["--domain_index=-1"], "--domain_index"),
        (["--data_dir={MISSING}"], "--data_dir={MISSING}"),
        (["--mask_dir={MISSING}"], "--mask_dir={MISSING}"),
        (["--out_dir={FILE}"], "--out_dir={FILE}"),
        (["--out_dir={FILE}/sub"], "--out_dir={FILE}/sub"),
    ]),
    "make_synthetic": (["--out_dir={NEW}", "--preset=tiny"], [
        (["--num_ids=0"], "num_ids"),
        (["--image_height=-8"], "image_height"),
        (["--preset=huge"], "--preset"),
        (["--out_dir={FILE}"], "--out_dir={FILE}"),
    ]),
    "make_masks": (["--dataset=market1501", "--data_dir={DIR}", "--out_dir={NEW}"], [
        (["--batch_size=0"], "--batch_size"),
        (["--min_coverage=1.5"], "--min_coverage"),
        (["--num_samples=-1"], "--num_samples"),
        (["--splits=training"], "--splits"),
        (["--data_dir={MISSING}"], "--data_dir={MISSING}"),
        (["--out_dir={FILE}"], "--out_dir={FILE}"),
    ]),
    "train_gan": (["--domain_dirs={DIR},{DIR2}", "--run_dir={NEW}", "--image_height=64", "--image_width=64",
                   "--d_num_layers=3"], [
        (["--batch_size=0"], "--batch_size"),
        (["--max_steps=-1"], "--max_steps"),
        (["--lambda_rec=-1"], "--lambda_rec"),
        (["--learning_rate=0"], "--learning_rate"),
        (["--beta1=1.5"], "--beta1"),
        (["--n_critic=0"], "--n_critic"),
        (["--g_ema_decay=1"], "--g_ema_decay"),
        (["--lr_decay_start=0"], "--lr_decay_start"),
        (["--image_height=60"], "--image_height"),
        (["--upsample=cubic"], "--upsample"),
        (["--precision=float8"], "--precision"),
        (["--domain_dirs={DIR},{MISSING}"], "{MISSING}"),
        (["--run_dir={FILE}"], "--run_dir={FILE}"),
    ]),
    "train_reid": (["--model=ide", "--train_dir={DIR}", "--run_dir={NEW}", "--image_height=64",
                    "--image_width=32"], [
        (["--batch_size=0"], "--batch_size"),
        (["--epochs=0"], "--epochs"),
        (["--momentum=-0.5"], "--momentum"),
        (["--learning_rate=0"], "--learning_rate"),
        (["--image_height=100"], "--image_height"),
        (["--model=resnet"], "--model"),
        (["--train_dir={MISSING}"], "--train_dir={MISSING}"),
        (["--model=da2s", "--stream1_dir={DIR}", "--stream2_dir={MISSING}"], "--stream2_dir={MISSING}"),
        (["--backbone_weights={MISSING}.h5"], "--backbone_weights={MISSING}.h5"),
        (["--run_dir={FILE}"], "--run_dir={FILE}"),
    ]),
    "generate": (["--run_dir={RUN}", "--in_dir={DIR}", "--out_root={NEW}"], [
        (["--batch_size=0"], "--batch_size"),
        (["--variants=soft"], "--variants"),
        (["--run_dir={MISSING}"], "--run_dir={MISSING}"),
        (["--in_dir={MISSING}"], "--in_dir={MISSING}"),
        (["--out_root={FILE}"], "--out_root={FILE}"),
    ]),
    "evaluate": (["--run_dir={RUN}", "--query_tfrecords={DIR}", "--gallery_tfrecords={DIR}"], [
        (["--batch_size=0"], "--batch_size"),
        (["--max_rank=0"], "--max_rank"),
        (["--num_repeats=0"], "--num_repeats"),
        (["--distance=manhattan"], "--distance"),
        (["--run_dir={MISSING}"], "--run_dir={MISSING}"),
        (["--query_tfrecords={MISSING}"], "--query_tfrecords={MISSING}"),
        (["--gallery_tfrecords={DIR}/part-0.tfrecord,{MISSING}/*.tfrecord"], "{MISSING}/*.tfrecord"),
        (["--out={DIR}"], "--out={DIR}"),
    ]),
    "search": (["build", "--features={DIR}", "--out={NEW}"], [
        (["--k=0"], "--k"),
        (["--kind=lsh"], "--kind"),
        (["--features={MISSING}"], "--features={MISSING}"),
        (["--out={FILE}"], "--out={FILE}"),
        (["--index={MISSING}"], "--index={MISSING}"),
    ]),
    "pipeline": (["--preset=tiny", "--runs_root={NEW}"], [
        (["--num_shards=0"], "--num_shards"),
        (["--eval_batch_size=0"], "--eval_batch_size"),
        (["--tsne_num_per_domain=0"], "--tsne_num_per_domain"),
        (["--data=sythetic"], "--data"),
        (["--eval_distance=manhattan"], "--eval_distance"),
        (["--preset=huge"], "--preset"),
        (["--gan_flagfile={MISSING}.flags"], "--gan_flagfile={MISSING}.flags"),
        (["--runs_root={FILE}"], "--runs_root={FILE}"),
    ]),
    "experiments": (["--preset=tiny", "--runs_root={NEW}"], [
        (["--num_shards=0"], "--num_shards"),
        (["--reid_flagfile={MISSING}.flags"], "--reid_flagfile={MISSING}.flags"),
        (["--runs_root={FILE}"], "--runs_root={FILE}"),
    ]),
    "results": (["--out={NEW}/RESULTS.md"], [
        (["--parts={MISSING}"], "--parts={MISSING}"),
        (["--experiments={MISSING}.json"], "--experiments={MISSING}.json"),
        (["--experiments={DIR}", "--out={DIR}"], "--out={DIR}"),
    ]),
    "visualize": (["--tfrecord_dirs={DIR},{DIR2}", "--out_dir={NEW}"], [
        (["--num_per_domain=0"], "--num_per_domain"),
        (["--perplexity=0"], "--perplexity"),
        (["--split=val"], "--split"),
        (["--variants=soft"], "--variants"),
        (["--image_size=64"], "--image_size"),
        (["--tfrecord_dirs={DIR},{MISSING}"], "{MISSING}"),
        (["--gan_run_dir={MISSING}"], "--gan_run_dir={MISSING}"),
        (["--out_dir={FILE}"], "--out_dir={FILE}"),
    ]),
    "serving_client": (["--images={IMG}", "--out_dir={NEW}"], [
        (["--timeout=0"], "--timeout"),
        (["--protocol=ftp"], "--protocol"),
        (["--image_size=64"], "--image_size"),
        (["--images={MISSING}/*.jpg"], "{MISSING}/*.jpg"),
        (["--out_dir={FILE}"], "--out_dir={FILE}"),
    ]),
    "gan_ablation": (["--preset=tiny", "--runs_root={NEW}", "--out={NEW}/ablation.json"], [
        (["--max_images=-1"], "--max_images"),
        (["--measure_split=val"], "--measure_split"),
        (["--ablation_seeds=one"], "--ablation_seeds"),
        (["--out={DIR}"], "--out={DIR}"),
    ]),
    "bench": (["--out={NEW}/bench.json"], [
        (["--train_steps=-1"], "--train_steps"),
        (["--only=rnak"], "--only"),
        (["--out={DIR}"], "--out={DIR}"),
    ]),
}

_FLAGFILE_CASES = [
    (["--flagfile={MISSING}.flags"], "--flagfile={MISSING}.flags: no such file"),
    (["--flagfile={ROOT}/loop.flags"], "--flagfile={ROOT}/loop.flags includes itself"),
    (["--flagfile={ROOT}/outer.flags"], "--flagfile={MISSING}.flags: no such file (included by {ROOT}/outer.flags)"),
]


def _snapshot(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, dirs, files in os.walk(root) for name in dirs + files)


@pytest.mark.parametrize("name", sorted(_CASES))
def test_bad_flag_or_path_is_one_line_exit_2_and_nothing_written(name, paths):
    base, cases = _CASES[name]
    root = paths["ROOT"]
    with open(os.path.join(root, "loop.flags"), "w") as f:
        f.write(f"--flagfile={root}/loop.flags\n")
    with open(os.path.join(root, "outer.flags"), "w") as f:
        f.write(f"# includes a file that is not there\n--flagfile={paths['MISSING']}.flags\n")
    before = _snapshot(root)
    cases = cases + (_FLAGFILE_CASES if name in ("build_tfrecords", "train_gan", "pipeline") else [])
    argvs = [_fill(base + bad, paths) for bad, _ in cases]
    results = run_cases(name, argvs)
    problems = []
    for (bad, named), result in zip(cases, results):
        lines = result["stderr"].strip().splitlines()
        named = _fill([named], paths)[0]
        if not (result["code"] == 2 and len(lines) == 1 and lines[0].startswith(f"{name}: error:")
                and named in lines[0]):
            problems.append(f"{bad} -> exit {result['code']}, stderr:\n{result['stderr'][-1500:]}")
    assert not problems, "\n\n".join(problems)
    assert _snapshot(root) == before, "a failed command wrote something"


# --- item 3: odd images and masks in a Market-1501 folder fed to build_tfrecords ---------------------------

def _odd_layout(tmp_path, case):
    """A tiny Market-1501 layout with masks, one train image (or its mask) replaced by `case`; returns
    (data dir, mask dir, the replaced file, the pixels it should decode to or None)."""
    import numpy as np
    from PIL import Image

    import data_fixtures

    data, masks = str(tmp_path / "data"), str(tmp_path / "masks")
    data_fixtures.make_layout(data, data_fixtures.MARKET_NAMES, mask_dir=masks)
    name = data_fixtures.MARKET_NAMES["train"][0]
    image_path = os.path.join(data, "bounding_box_train", name)
    mask_path = os.path.join(masks, "bounding_box_train", name[:-4] + ".png")
    pixels = data_fixtures.image_array(5)
    gray = pixels[..., 0]
    if case == "grayscale":
        Image.fromarray(gray).save(image_path, format="JPEG", quality=95)
        return data, masks, image_path, np.repeat(gray[..., None], 3, axis=-1)
    if case == "cmyk":
        Image.fromarray(pixels).convert("CMYK").save(image_path, format="JPEG", quality=95)
        return data, masks, image_path, pixels
    if case == "png16":  # a 16-bit PNG under a .jpg name: 0..65535 must not clip to white
        Image.fromarray(gray.astype(np.uint16) * 257).save(image_path, format="PNG")
        return data, masks, image_path, np.repeat(gray[..., None], 3, axis=-1)
    if case == "zero_byte":
        open(image_path, "wb").close()
        return data, masks, image_path, None
    if case == "mask_missing":
        os.remove(mask_path)
        return data, masks, mask_path, None
    if case == "mask_wrong_size":
        data_fixtures.write_mask(mask_path, height=40, width=16)
        return data, masks, mask_path, None
    raise ValueError(case)


@pytest.mark.parametrize("case", ["grayscale", "cmyk", "png16", "zero_byte", "mask_missing", "mask_wrong_size"])
def test_odd_images_are_stored_faithfully_or_refused_naming_the_file(tmp_path, case):
    import numpy as np
    import tensorflow as tf

    from bgshift_tf.core import errors
    from bgshift_tf.data import schema
    from bgshift_tf.data.build import build_dataset_tfrecords

    data, masks, path, expected = _odd_layout(tmp_path, case)
    out = tmp_path / "out"
    if expected is None:
        with pytest.raises(errors.UserError, match=os.path.basename(path)):
            build_dataset_tfrecords("market1501", data, str(out), mask_dir=masks, num_shards=1, progress=False)
        assert not (out / "manifest.json").exists()
        return
    build_dataset_tfrecords("market1501", data, str(out), mask_dir=masks, num_shards=1, progress=False)
    stored = {}
    for shard in sorted(out.glob("*train*.tfrecord")):
        for raw in tf.data.TFRecordDataset(str(shard)):
            example = tf.io.parse_single_example(raw, {"image": tf.io.FixedLenFeature([], tf.string),
                                                       "filename": tf.io.FixedLenFeature([], tf.string)})
            stored[os.path.basename(example["filename"].numpy().decode())] = schema.decode_image(example["image"])
    decoded = stored[os.path.basename(path)].numpy().astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 8, "the stored image is not the source's pixels"


# --- item 4: resume train_reid from a run of another image size / width ------------------------------------

def test_reid_resume_from_another_size_names_the_checkpoint_and_the_mismatch(tmp_path):
    from bgshift_tf.core import errors
    from bgshift_tf.training import reid

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = {"input_shape": [64, 32, 3], "growth_rate": 32, "weights": None}
    (run_dir / "config.json").write_text(json.dumps({"model_class": "ide", "model": spec}))
    reid._check_resumable(str(run_dir), {"model_class": "ide", "model": dict(spec)})  # same model: resumes
    with pytest.raises(errors.UserError) as caught:
        reid._check_resumable(str(run_dir), {"model_class": "ide", "model": {**spec, "input_shape": [128, 64, 3],
                                                                             "growth_rate": 16}})
    message = str(caught.value)
    assert "\n" not in message and str(run_dir / "config.json") in message
    assert "model.input_shape [64, 32, 3] -> [128, 64, 3]" in message and "model.growth_rate 32 -> 16" in message


# --- item 6: a real bug keeps its traceback -------------------------------------------------------------------

def test_a_bug_in_our_code_keeps_its_traceback(paths):
    argv = _fill(["--dataset=market1501", "--data_dir={DIR}", "--out_dir={NEW}"], paths)
    (result,) = run_cases("build_tfrecords", [argv], bug_in="build_dataset_tfrecords")
    assert result["code"] == "exception", result
    assert "Traceback" in result["stderr"] and "RuntimeError: a bug in our code" in result["stderr"]
    assert "build_tfrecords: error" not in result["stderr"]
