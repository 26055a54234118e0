"""The synthetic world as a whole: presets and their checks, the on-disk layout, and `make_world`.

`make_world` plans each domain (which identities are train or test, which cameras see each one, the
distractors and junk crops), renders every image through render.py with a generator keyed by
(seed, domain, image number), and writes the Market-1501 folders, both mask folders, the contact sheet
(contact_sheet.py) and world.json, in that order, through a `.partial` folder renamed into place.
"""

import json
import os
import shutil

import numpy as np
from PIL import Image
from tqdm import tqdm

from bgshift_tf.data.images import SPLIT_FOLDERS
from bgshift_tf.data.synthetic.contact_sheet import contact_sheet
from bgshift_tf.data.synthetic.people import sample_identity
from bgshift_tf.data.synthetic.render import render_image
from bgshift_tf.data.synthetic.scenes import make_camera

FORMAT_VERSION = 1
DOMAINS = (("synmarket", 6), ("synduke", 8), ("syncuhk", 2))
MASK_FOLDER = "masks"
EXACT_MASK_FOLDER = "masks_exact"

PRESETS = {
    # Tests: ~40 images per domain, generated in about a second.
    "tiny": {
        "image_height": 64,
        "image_width": 32,
        "num_ids": 8,
        "test_id_fraction": 0.5,
        "images_per_id": 5,
        "num_distractors": 3,
        "num_junk": 2,
        "companion_prob": 0.3,
        "vehicle_prob": 0.2,
        "domains": [name for name, _ in DOMAINS],
    },
    # Demo: 60 train + 40 test ids per domain, ~10 images each: ~3,100 images in all.
    "demo": {
        "image_height": 128,
        "image_width": 64,
        "num_ids": 100,
        "test_id_fraction": 0.4,
        "images_per_id": 10,
        "num_distractors": 20,
        "num_junk": 10,
        "companion_prob": 0.3,
        "vehicle_prob": 0.2,
        "domains": [name for name, _ in DOMAINS],
    },
    # Study (configs/study.flags): 600 train + 1,000 test ids per domain, ~6 images each, at the 64x32 the
    # models train on: ~10,000 images per domain. Query images (one per camera of a test id): 2,335 /
    # 2,333 / 2,000 in synmarket / synduke / syncuhk (world seed 0), gallery ~3,900-4,200 + 250 distractors.
    "study": {
        "image_height": 64,
        "image_width": 32,
        "num_ids": 1600,
        "test_id_fraction": 0.625,
        "images_per_id": 6,
        "num_distractors": 200,
        "num_junk": 50,
        "companion_prob": 0.3,
        "vehicle_prob": 0.2,
        "domains": [name for name, _ in DOMAINS],
    },
}


def resolve_config(preset: str = "tiny", **overrides) -> dict:
    """The full generation config: the preset's values with `overrides` applied and checked.

    Raises ValueError naming the bad preset / key / value.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown synthetic-world preset. Received: preset={preset!r}; known: {sorted(PRESETS)}")
    config = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"Unknown synthetic-world settings {unknown}; known: {sorted(config)}")
    config.update({key: value for key, value in overrides.items() if value is not None})
    config["domains"] = list(config["domains"])
    known_domains = [name for name, _ in DOMAINS]
    bad = [name for name in config["domains"] if name not in known_domains]
    if bad or not config["domains"] or len(set(config["domains"])) != len(config["domains"]):
        raise ValueError(
            f"`domains` must be distinct names from {known_domains}. Received: domains={config['domains']}"
        )
    config["domains"] = [name for name in known_domains if name in config["domains"]]
    minimums = {
        "image_height": 32, "image_width": 16, "num_ids": 2, "images_per_id": 4, "num_distractors": 0, "num_junk": 0,
    }
    for key, low in minimums.items():
        config[key] = int(config[key])
        if config[key] < low:
            raise ValueError(f"`{key}` must be >= {low}. Received: {key}={config[key]}")
    for key in ("test_id_fraction", "companion_prob", "vehicle_prob"):
        config[key] = float(config[key])
        if not 0.0 <= config[key] <= 1.0:
            raise ValueError(f"`{key}` must be in [0, 1]. Received: {key}={config[key]}")
    num_test = round(config["num_ids"] * config["test_id_fraction"])
    if not 1 <= num_test < config["num_ids"]:
        raise ValueError(
            "`num_ids` and `test_id_fraction` must leave at least one train and one test id. "
            f"Received: num_ids={config['num_ids']}, test_id_fraction={config['test_id_fraction']}"
        )
    if config["num_ids"] * len(config["domains"]) > 9998:
        raise ValueError(f"Person ids must fit in 4 digits. Received: num_ids={config['num_ids']} per domain")
    return config


def domain_paths(out_dir, domain_name: str) -> dict:
    """Folders of one domain: {"data_dir", "mask_dir", "exact_mask_dir"} (Market-1501 layout inside)."""
    data_dir = os.path.join(os.fspath(out_dir), domain_name)
    return {
        "data_dir": data_dir,
        "mask_dir": os.path.join(data_dir, MASK_FOLDER),
        "exact_mask_dir": os.path.join(data_dir, EXACT_MASK_FOLDER),
    }


def load_world(out_dir) -> dict:
    """The world.json of a finished world (raises FileNotFoundError naming the folder if unfinished)."""
    path = os.path.join(os.fspath(out_dir), "world.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No finished synthetic world in {os.fspath(out_dir)!r}: {path!r} is missing "
            "(run `python -m bgshift_tf.make_synthetic --out_dir=...`)."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def make_world(out_dir, *, preset: str = "tiny", seed: int = 0, verbose: bool = False, **overrides) -> dict:
    """Generates the synthetic world into `out_dir` and returns its world.json content.

    If `out_dir/world.json` already describes the same seed, preset and settings, nothing is redone.
    Otherwise the world is drawn into `<out_dir>.partial` and renamed into place once world.json is
    written, so an interrupted run never looks finished. An existing `out_dir` is replaced only if it
    holds nothing but a (possibly unfinished) world; any other content raises instead of being deleted.

    Args:
        out_dir: target folder.
        preset: "tiny", "demo" or "study" (see PRESETS).
        seed: int; the same seed gives byte-identical files.
        verbose: show a progress bar and one summary line per domain.
        **overrides: any PRESETS key, e.g. num_ids=20, images_per_id=6, image_height=64, domains=[...].
    """
    config = resolve_config(preset, **overrides)
    seed = int(seed)
    out_dir = os.path.abspath(os.fspath(out_dir))
    existing = _finished_world(out_dir, seed, preset, config)
    if existing is not None:
        if verbose:
            print(f"[synthetic] {out_dir} already holds this world (seed {seed}, preset {preset}); nothing to do")
        return existing
    if os.path.exists(out_dir):
        _check_replaceable(out_dir)
    partial = out_dir + ".partial"
    if os.path.exists(partial):
        shutil.rmtree(partial)
    os.makedirs(partial)

    world = {
        "format_version": FORMAT_VERSION,
        "generator": "bgshift_tf.data.synthetic",
        "seed": seed,
        "preset": preset,
        "config": config,
        "image_height": config["image_height"],
        "image_width": config["image_width"],
        "domains": [],
    }
    pid_start = 1
    samples = {}
    for index, (name, num_cameras) in enumerate(DOMAINS):
        if name not in config["domains"]:
            continue
        info, samples[name] = _make_domain(partial, name, index, num_cameras, pid_start, config, seed, verbose)
        pid_start += config["num_ids"]
        world["domains"].append(info)
        if verbose:
            counts = info["counts"]
            print(
                f"[synthetic] {name}: {counts['train']} train, {counts['query']} query, "
                f"{counts['gallery']} gallery images"
            )
    contact_sheet(samples, config).save(os.path.join(partial, "contact_sheet.png"))
    with open(os.path.join(partial, "world.json"), "w", encoding="utf-8") as f:
        json.dump(world, f, indent=2, sort_keys=True)
    _move_into_place(partial, out_dir)
    return world


def _finished_world(out_dir, seed, preset, config):
    """The world.json content of `out_dir` if it is a finished world of this seed, preset and config, else None."""
    if not os.path.isfile(os.path.join(out_dir, "world.json")):
        return None
    existing = load_world(out_dir)
    wanted = {"format_version": FORMAT_VERSION, "seed": seed, "preset": preset, "config": config}
    return existing if all(existing.get(key) == value for key, value in wanted.items()) else None


def _move_into_place(partial, out_dir):
    """Renames the finished `partial` folder to `out_dir`, replacing an old world there (via `<out_dir>.stale`)."""
    if not os.path.exists(out_dir):
        os.replace(partial, out_dir)
        return
    stale = out_dir + ".stale"
    if os.path.exists(stale):
        shutil.rmtree(stale)
    os.replace(out_dir, stale)
    os.replace(partial, out_dir)
    shutil.rmtree(stale)


def _check_replaceable(out_dir):
    """Raises FileExistsError naming `out_dir` unless it is a folder holding only a (possibly unfinished) world."""
    known = {name for name, _ in DOMAINS} | {"world.json", "contact_sheet.png"}
    if not os.path.isdir(out_dir) or not set(os.listdir(out_dir)) <= known:
        raise FileExistsError(
            f"Refusing to overwrite {out_dir!r}: it exists and is not a synthetic world "
            f"(expected only {sorted(known)}). Choose another --out_dir or remove it."
        )



def _plan_identity(rng, num_cameras, config, test):
    """[(camera, split)] for one identity: 2+ cameras, 2+ images per camera; test ids: one query per camera."""
    mean = config["images_per_id"]
    jitter = mean // 4
    count = max(4, int(rng.integers(mean - jitter, mean + jitter + 1)))
    most_cameras = max(2, min(num_cameras, 4, count // 2))
    k = int(rng.integers(2, most_cameras + 1))
    cameras = sorted((rng.choice(num_cameras, size=k, replace=False) + 1).tolist())
    per_camera = np.full(k, 2) + np.bincount(rng.integers(0, k, count - 2 * k), minlength=k)
    plan = []
    for camera, n in zip(cameras, per_camera):
        for j in range(int(n)):
            split = ("query" if j == 0 else "gallery") if test else "train"
            plan.append((camera, split))
    return plan



def _plan_domain(name, index, num_cameras, pid_start, config, seed):
    """(train pids, test pids, jobs) of one domain; a job is (pid, identity, camera, split, junk), in drawing order.

    pid 0 marks a distractor (gallery only) and pid -1 a junk crop (synmarket's gallery only), as in Market-1501.
    """
    rng = np.random.default_rng([seed, index, 0])
    pids = rng.permutation(np.arange(pid_start, pid_start + config["num_ids"]))
    num_test = round(config["num_ids"] * config["test_id_fraction"])
    test_pids = sorted(pids[:num_test].tolist())
    train_pids = sorted(pids[num_test:].tolist())

    jobs = []
    for pid in sorted(pids.tolist()):
        id_rng = np.random.default_rng([seed, index, 2, pid])
        identity = sample_identity(id_rng, config)
        for camera, split in _plan_identity(id_rng, num_cameras, config, test=pid in test_pids):
            jobs.append((pid, identity, camera, split, False))
    extra_rng = np.random.default_rng([seed, index, 3])
    for _ in range(config["num_distractors"]):
        identity = sample_identity(extra_rng, config, with_context=False)
        jobs.append((0, identity, int(extra_rng.integers(1, num_cameras + 1)), "gallery", False))
    if name == "synmarket":
        for _ in range(config["num_junk"]):
            identity = sample_identity(extra_rng, config, with_context=False)
            jobs.append((-1, identity, int(extra_rng.integers(1, num_cameras + 1)), "gallery", True))
    return train_pids, test_pids, jobs


def _make_domain(root, name, index, num_cameras, pid_start, config, seed, verbose=False):
    """Draws one domain into root/<name>; returns (world.json entry, contact-sheet samples).

    Samples: {camera: [(image, parser mask, exact mask, caption "<pid> c<camera>")]}, up to 6 distinct ids each.
    """
    height, width = config["image_height"], config["image_width"]
    cameras = [
        make_camera(np.random.default_rng([seed, index, 1, c]), name, c, height, width)
        for c in range(1, num_cameras + 1)
    ]
    train_pids, test_pids, jobs = _plan_domain(name, index, num_cameras, pid_start, config, seed)
    paths = domain_paths(root, name)
    for base in (paths["data_dir"], paths["mask_dir"], paths["exact_mask_dir"]):
        for folder in SPLIT_FOLDERS.values():
            os.makedirs(os.path.join(base, folder), exist_ok=True)

    frame_counter = np.zeros(num_cameras + 1, dtype=np.int64)
    counts = {"train": 0, "query": 0, "gallery": 0, "distractors": 0, "junk": 0}
    samples = {}
    ious = []
    progress = tqdm(jobs, desc=f"[synthetic] {name}", unit="img", disable=not verbose, leave=False)
    for number, (pid, identity, camera, split, junk) in enumerate(progress):
        img_rng = np.random.default_rng([seed, index, 4, number])
        image, exact, parser = render_image(img_rng, identity, cameras[camera - 1], config, junk=junk)
        stem = _market_stem(pid, camera, int(frame_counter[camera]), number)
        frame_counter[camera] += 1
        _save_image(paths, SPLIT_FOLDERS[split], stem, image, exact, parser)
        counts[split] += 1
        counts["distractors"] += pid == 0
        counts["junk"] += pid < 0
        if pid > 0:
            ious.append(_iou(exact, parser))
        shown = samples.setdefault(camera, [])
        if pid > 0 and len(shown) < 6 and all(caption.split()[0] != f"{pid:04d}" for *_, caption in shown):
            samples[camera].append((image, parser, exact, f"{pid:04d} c{camera}"))

    info = {
        "name": name,
        "index": index,
        "num_cameras": num_cameras,
        "dir": name,
        "mask_dir": f"{name}/{MASK_FOLDER}",
        "exact_mask_dir": f"{name}/{EXACT_MASK_FOLDER}",
        "train_pids": train_pids,
        "test_pids": test_pids,
        "counts": counts,
        "parser_mask_mean_iou": round(float(np.mean(ious)), 4),
        "cameras": [{key: cam[key] for key in ("camera", "gain", "gradient", "contrast", "noise")} for cam in cameras],
    }
    return info, samples


def _market_stem(pid, camera, frame, number):
    """Market-1501 file stem, e.g. "0002_c1s1_000451_03": pid (-1 = junk), camera, sequence, frame, detection."""
    pid_text = "-1" if pid < 0 else f"{pid:04d}"
    return f"{pid_text}_c{camera}s{1 + frame // 100}_{25 * frame + 1:06d}_{1 + number % 4:02d}"


def _save_image(paths, folder, stem, image, exact, parser):
    """Writes the JPEG image and its two 0/255 PNG masks (parser, exact) into `folder` of each tree in `paths`."""
    Image.fromarray(image).save(os.path.join(paths["data_dir"], folder, stem + ".jpg"), quality=92)
    Image.fromarray(parser * np.uint8(255)).save(os.path.join(paths["mask_dir"], folder, stem + ".png"))
    Image.fromarray(exact * np.uint8(255)).save(os.path.join(paths["exact_mask_dir"], folder, stem + ".png"))


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
