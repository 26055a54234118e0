"""The built-in synthetic multi-domain person re-ID world (SPEC §1, "The synthetic re-ID world").

No real re-ID dataset can be downloaded here, so this module draws a small cartoon world that has the
problem SBSGAN addresses: three domains whose *backgrounds* differ strongly (and differ per camera inside a
domain), while the pedestrians come from one shared distribution. A re-ID model trained on one domain can
therefore learn background shortcuts that fail on another.

Domains (K = 3, in this index order):
    synmarket  6 cameras  sunny summer campus: brick / stone facades with window grids, shop fronts,
               green hedges, pale paving tiles; bright, warm light.
    synduke    8 cameras  overcast winter campus: grey stone walls or bare trees against a pale sky,
               dark asphalt with road stripes, muted grass or snow, parked cars; cool, dim light.
    syncuhk    2 cameras  indoor corridors: pale painted walls with pillars, doors and notice boards,
               fluorescent ceiling strips, polished checker floors; yellowish, low-contrast light.

On disk (`make_world(out_dir, ...)`), one folder per domain in the Market-1501 layout:
    <out_dir>/world.json                       written last: its presence marks a finished world
    <out_dir>/contact_sheet.png                sample images | parser masks | mask errors, per domain
    <out_dir>/<domain>/{bounding_box_train,bounding_box_test,query}/0002_c1s1_000451_03.jpg
    <out_dir>/<domain>/masks/<same folders>/<same stem>.png        noisy "parser" masks, 0/255
    <out_dir>/<domain>/masks_exact/<same folders>/<same stem>.png  exact body masks (incl. bag), 0/255

Per image: walking pose, scale and position jitter; a crop of that camera's scene; camera light (gain,
gradient, noise); sometimes the identity's companion or vehicle partly in view (ID-related context,
paper §4). Test ids give one query per camera and the rest to the gallery; every domain's gallery also
holds distractors (pid 0000) and synmarket's a few junk crops (pid -1), as in Market-1501.

Everything is drawn with numpy + PIL and is deterministic from the seed: each image has its own random
generator keyed by (seed, domain, pid, image number), so the same seed gives byte-identical files.
"""

import json
import os
import shutil

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

FORMAT_VERSION = 1
DOMAINS = (("synmarket", 6), ("synduke", 8), ("syncuhk", 2))
IMAGE_FOLDERS = ("bounding_box_train", "bounding_box_test", "query")
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
}

_HAIR = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.75, 0.60, 0.35), (0.6, 0.6, 0.6))  # black, brown, blond, grey

_SHADOW_LUT = [int(0.6 * v) for v in range(256)] * 3  # darkens all three channels to 60%

# Labels of the person's parts in the label map drawn with the person (0 = not the person).
_HEAD, _TRUNK, _ARM_A, _ARM_B, _LEG_A, _LEG_B, _BAG = 1, 2, 3, 4, 5, 6, 7

# Per-domain light: channel gains, contrast around mid-grey, and how often a random vehicle passes.
# Kept mild on purpose: the domain shift should live mostly in the background, not in the people.
_DOMAIN_LIGHT = {
    "synmarket": {"gain": (1.05, 1.02, 0.96), "contrast": 1.05, "traffic": 0.05},
    "synduke": {"gain": (0.93, 0.96, 1.02), "contrast": 0.95, "traffic": 0.15},
    "syncuhk": {"gain": (1.00, 0.98, 0.92), "contrast": 0.90, "traffic": 0.0},
}


# ----------------------------------------------------------------------------------------------------
# Public helpers
# ----------------------------------------------------------------------------------------------------


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
    checks = {
        "image_height": (32, None),
        "image_width": (16, None),
        "num_ids": (2, None),
        "images_per_id": (4, None),
        "num_distractors": (0, None),
        "num_junk": (0, None),
    }
    for key, (low, _) in checks.items():
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
        preset: "tiny" or "demo" (see PRESETS).
        seed: int; the same seed gives byte-identical files.
        verbose: show a progress bar and one summary line per domain.
        **overrides: any PRESETS key, e.g. num_ids=20, images_per_id=6, image_height=64, domains=[...].
    """
    config = resolve_config(preset, **overrides)
    seed = int(seed)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.isfile(os.path.join(out_dir, "world.json")):
        existing = load_world(out_dir)
        wanted = {"format_version": FORMAT_VERSION, "seed": seed, "preset": preset, "config": config}
        if all(existing.get(key) == value for key, value in wanted.items()):
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
    _contact_sheet(samples, config).save(os.path.join(partial, "contact_sheet.png"))
    with open(os.path.join(partial, "world.json"), "w", encoding="utf-8") as f:
        json.dump(world, f, indent=2, sort_keys=True)
    if os.path.exists(out_dir):
        stale = out_dir + ".stale"
        if os.path.exists(stale):
            shutil.rmtree(stale)
        os.replace(out_dir, stale)
        os.replace(partial, out_dir)
        shutil.rmtree(stale)
    else:
        os.replace(partial, out_dir)
    return world


def _check_replaceable(out_dir):
    known = {name for name, _ in DOMAINS} | {"world.json", "contact_sheet.png"}
    if not os.path.isdir(out_dir) or not set(os.listdir(out_dir)) <= known:
        raise FileExistsError(
            f"Refusing to overwrite {out_dir!r}: it exists and is not a synthetic world "
            f"(expected only {sorted(known)}). Choose another --out_dir or remove it."
        )


# ----------------------------------------------------------------------------------------------------
# Identities and the plan of images
# ----------------------------------------------------------------------------------------------------


def _colour(rng, neutral_prob=0.4):
    """A clothing colour, RGB floats in [0, 1]: neutral (black..white) or saturated."""
    if rng.random() < neutral_prob:
        v = rng.choice([rng.uniform(0.08, 0.25), rng.uniform(0.35, 0.65), rng.uniform(0.8, 0.95)])
        return np.clip(v + rng.normal(0, 0.02, 3), 0, 1)
    hue, sat, val = rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9)
    return _hsv_to_rgb(hue, sat, val)


def _hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _sample_identity(rng, config, with_context=True) -> dict:
    """Appearance of one person (shared distribution for all domains) and its context cues."""
    skin_t = rng.random()
    identity = {
        "upper": _colour(rng),
        "upper2": _colour(rng),
        "pattern": rng.choice(["solid", "solid", "hstripes", "vstripes", "jacket", "logo"]),
        "sleeves": rng.choice(["long", "short"]),
        "lower": _colour(rng, neutral_prob=0.6),
        "lower_style": rng.choice(["trousers", "trousers", "shorts", "skirt"], p=[0.4, 0.3, 0.15, 0.15]),
        "skin": (1 - skin_t) * np.array([0.96, 0.80, 0.68]) + skin_t * np.array([0.38, 0.24, 0.16]),
        "hair": np.array(_HAIR[rng.choice(len(_HAIR), p=[0.5, 0.3, 0.1, 0.1])]),
        "long_hair": rng.random() < 0.3,
        "shoes": _colour(rng, neutral_prob=0.8) * 0.6,
        "build_w": rng.uniform(0.85, 1.18),
        "build_h": rng.uniform(0.93, 1.05),
        "bag": rng.choice(["none", "backpack", "handbag", "shoulder"], p=[0.45, 0.25, 0.15, 0.15]),
        "bag_colour": _colour(rng, neutral_prob=0.5),
        "companion": None,
        "vehicle": None,
    }
    if with_context and rng.random() < config["companion_prob"]:
        identity["companion"] = _sample_identity(rng, config, with_context=False)
    if with_context and rng.random() < config["vehicle_prob"]:
        identity["vehicle"] = _sample_vehicle(rng)
    return identity


def _sample_vehicle(rng) -> dict:
    return {"kind": rng.choice(["car", "bike"]), "colour": _colour(rng, neutral_prob=0.4), "side": rng.choice([-1, 1])}


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


# ----------------------------------------------------------------------------------------------------
# Domain generation
# ----------------------------------------------------------------------------------------------------


def _make_domain(root, name, index, num_cameras, pid_start, config, seed, verbose=False):
    """Draws one domain into root/<name>; returns (world.json entry, contact-sheet samples)."""
    height, width = config["image_height"], config["image_width"]
    rng = np.random.default_rng([seed, index, 0])
    cameras = [
        _make_camera(np.random.default_rng([seed, index, 1, c]), name, c, height, width)
        for c in range(1, num_cameras + 1)
    ]

    pids = rng.permutation(np.arange(pid_start, pid_start + config["num_ids"]))
    num_test = round(config["num_ids"] * config["test_id_fraction"])
    test_pids = sorted(pids[:num_test].tolist())
    train_pids = sorted(pids[num_test:].tolist())

    jobs = []  # (pid, identity, camera, split, junk)
    for pid in sorted(pids.tolist()):
        id_rng = np.random.default_rng([seed, index, 2, pid])
        identity = _sample_identity(id_rng, config)
        for camera, split in _plan_identity(id_rng, num_cameras, config, test=pid in test_pids):
            jobs.append((pid, identity, camera, split, False))
    extra_rng = np.random.default_rng([seed, index, 3])
    for _ in range(config["num_distractors"]):
        identity = _sample_identity(extra_rng, config, with_context=False)
        jobs.append((0, identity, int(extra_rng.integers(1, num_cameras + 1)), "gallery", False))
    if name == "synmarket":
        for _ in range(config["num_junk"]):
            identity = _sample_identity(extra_rng, config, with_context=False)
            jobs.append((-1, identity, int(extra_rng.integers(1, num_cameras + 1)), "gallery", True))

    paths = domain_paths(root, name)
    folder_of = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for base in (paths["data_dir"], paths["mask_dir"], paths["exact_mask_dir"]):
        for folder in IMAGE_FOLDERS:
            os.makedirs(os.path.join(base, folder), exist_ok=True)

    frame_counter = np.zeros(num_cameras + 1, dtype=np.int64)
    counts = {"train": 0, "query": 0, "gallery": 0, "distractors": 0, "junk": 0}
    samples = {}
    ious = []
    progress = tqdm(jobs, desc=f"[synthetic] {name}", unit="img", disable=not verbose, leave=False)
    for number, (pid, identity, camera, split, junk) in enumerate(progress):
        img_rng = np.random.default_rng([seed, index, 4, number])
        image, exact, parser = _render_image(img_rng, identity, cameras[camera - 1], config, junk=junk)
        frame = int(frame_counter[camera])
        frame_counter[camera] += 1
        pid_text = "-1" if pid < 0 else f"{pid:04d}"
        stem = f"{pid_text}_c{camera}s{1 + frame // 100}_{25 * frame + 1:06d}_{1 + number % 4:02d}"
        folder = folder_of[split]
        Image.fromarray(image).save(os.path.join(paths["data_dir"], folder, stem + ".jpg"), quality=92)
        Image.fromarray(parser * np.uint8(255)).save(os.path.join(paths["mask_dir"], folder, stem + ".png"))
        Image.fromarray(exact * np.uint8(255)).save(os.path.join(paths["exact_mask_dir"], folder, stem + ".png"))
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


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# ----------------------------------------------------------------------------------------------------
# Scenes: one wide background per camera, drawn from its domain's family
# ----------------------------------------------------------------------------------------------------


def _make_camera(rng, domain, camera, height, width) -> dict:
    """A camera: its scene (float32 [H + H/4, 3W, 3] in [0, 1]) and its light."""
    scene_h, scene_w = height + height // 4, 3 * width
    painter = {"synmarket": _scene_market, "synduke": _scene_duke, "syncuhk": _scene_cuhk}[domain]
    scene = painter(rng, scene_h, scene_w)
    scene *= (0.92 + 0.16 * _smooth_noise(rng, scene_h, scene_w, max(2, height // 16)))[..., None]
    light = _DOMAIN_LIGHT[domain]
    gain = np.round(np.array(light["gain"]) * rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3), 4)
    amount, angle = round(float(rng.uniform(0.0, 0.18)), 4), round(float(rng.uniform(0, 2 * np.pi)), 4)
    # Illumination gradient across the frame (the camera's light direction): -1..1 ramp.
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (np.cos(angle) * (xx / max(1, width - 1) - 0.5) + np.sin(angle) * (yy / max(1, height - 1) - 0.5)) * 2
    return {
        "camera": camera,
        "scene_image": Image.fromarray((255 * np.clip(scene, 0, 1) + 0.5).astype(np.uint8)),
        "gain": gain.tolist(),
        "gradient": [amount, angle],
        "noise": round(float(rng.uniform(0.005, 0.025)), 4),
        "contrast": light["contrast"],
        "traffic": light["traffic"],
        # image * light + offset = gain, gradient, then contrast around mid-grey, in one multiply-add.
        "light": (gain * (1 + amount * ramp)[..., None] * light["contrast"]).astype(np.float32),
        "offset": np.float32(0.5 * (1 - light["contrast"])),
    }


def _smooth_noise(rng, height, width, cell):
    """Low-frequency noise float32 [height, width] in [0, 1] (bilinear upsampling of a coarse grid)."""
    grid = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR))


def _rgb(colour):
    return tuple((np.clip(colour, 0, 1) * 255 + 0.5).astype(int).tolist())


def _jitter(rng, colour, amount=0.04):
    return np.clip(np.asarray(colour) + rng.normal(0, amount, 3), 0, 1)


def _to_float(image):
    return np.asarray(image, dtype=np.float32) / 255.0


def _scene_market(rng, h, w):
    """Sunny summer campus: facade (brick / cream / stone) with windows or a shop front, hedges, pale paving."""
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.5, 0.62))
    palette = [(0.72, 0.36, 0.26), (0.93, 0.84, 0.66), (0.95, 0.66, 0.40), (0.86, 0.86, 0.82), (0.80, 0.52, 0.48)]
    facade = _jitter(rng, palette[rng.integers(len(palette))])
    d.rectangle([0, 0, w, horizon], fill=_rgb(facade))
    unit = max(2, h // 40)
    if rng.random() < 0.5:  # brick courses
        mortar = _rgb(facade * 0.8 + 0.15)
        for row, y in enumerate(range(0, horizon, 2 * unit)):
            d.line([(0, y), (w, y)], fill=mortar, width=1)
            for x in range((row % 2) * 3 * unit, w, 6 * unit):
                d.line([(x, y), (x, y + 2 * unit)], fill=mortar, width=1)
    glass = _jitter(rng, (0.18, 0.28, 0.40), 0.05)
    if rng.random() < 0.5:  # shop front: sign band over a glass band
        sign_y = int(horizon * rng.uniform(0.35, 0.5))
        d.rectangle([0, sign_y, w, sign_y + 3 * unit], fill=_rgb(_colour(rng, neutral_prob=0)))
        d.rectangle([0, sign_y + 3 * unit, w, horizon], fill=_rgb(glass))
        for x in range(int(rng.integers(0, 8 * unit)), w, int(rng.integers(10, 16)) * unit):
            d.rectangle([x, sign_y + 3 * unit, x + unit, horizon], fill=_rgb(facade * 0.7))
        top = sign_y
    else:
        top = horizon
    win_w, win_h = int(rng.integers(3, 6)) * unit, int(rng.integers(4, 7)) * unit
    gap_x, gap_y = win_w + int(rng.integers(2, 5)) * unit, win_h + int(rng.integers(2, 4)) * unit
    frame = _rgb(np.clip(facade + 0.25, 0, 1))
    for y in range(unit * 2, top - win_h, gap_y):
        for x in range(int(rng.integers(0, gap_x)), w, gap_x):
            d.rectangle([x - 1, y - 1, x + win_w + 1, y + win_h + 1], fill=frame)
            d.rectangle([x, y, x + win_w, y + win_h], fill=_rgb(glass))
            d.line([(x, y + win_h // 3), (x + win_w, y)], fill=_rgb(glass + 0.2), width=1)
    if rng.random() < 0.65:  # hedge of round bushes along the horizon
        for x in range(-2 * unit, w + 4 * unit, 3 * unit):
            r = int(rng.integers(3, 6)) * unit
            green = _jitter(rng, (0.22, 0.50, 0.20), 0.06)
            d.ellipse([x - r, horizon - r - int(rng.integers(0, 2 * unit)), x + r, horizon + unit], fill=_rgb(green))
    paving = _jitter(rng, rng.choice([(0.80, 0.78, 0.72), (0.85, 0.80, 0.70), (0.74, 0.74, 0.74)]), 0.03)
    d.rectangle([0, horizon, w, h], fill=_rgb(paving))
    line = _rgb(paving * 0.82)
    y, step = horizon, 2 * unit
    while y < h:
        d.line([(0, y), (w, y)], fill=line, width=1)
        y, step = y + step, step + unit
    vanish = w * rng.uniform(0.2, 0.8)
    for x in range(-w, 2 * w, 5 * unit):
        d.line([(vanish + (x - vanish) * 0.3, horizon), (x, h)], fill=line, width=1)
    scene = _to_float(img)
    if rng.random() < 0.6:  # a hard diagonal sun shadow across the ground
        yy, xx = np.mgrid[0:h, 0:w]
        edge = rng.uniform(0, w) + (yy - horizon) * rng.uniform(-1.5, 1.5)
        scene[(yy > horizon) & (xx < edge)] *= 0.72
    return scene


def _scene_duke(rng, h, w):
    """Overcast winter campus: stone wall or bare trees on pale sky, dark asphalt with stripes, parked cars."""
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.38, 0.52))
    unit = max(2, h // 40)
    if rng.random() < 0.5:  # grey-brown stone wall of irregular blocks
        stone = _jitter(rng, rng.choice([(0.55, 0.50, 0.43), (0.48, 0.47, 0.46), (0.60, 0.56, 0.48)]), 0.03)
        d.rectangle([0, 0, w, horizon], fill=_rgb(stone))
        y = 0
        while y < horizon:
            bh = int(rng.integers(2, 4)) * unit
            x = -int(rng.integers(0, 4 * unit))
            while x < w:
                bw = int(rng.integers(3, 8)) * unit
                block = [x, y, x + bw - 1, y + bh - 1]
                d.rectangle(block, fill=_rgb(_jitter(rng, stone, 0.035)), outline=_rgb(stone * 0.7))
                x += bw
            y += bh
        for x in range(int(rng.integers(0, 10 * unit)), w, int(rng.integers(14, 22)) * unit):  # pointed windows
            d.rectangle([x, 3 * unit, x + 3 * unit, horizon - 4 * unit], fill=_rgb((0.15, 0.15, 0.18)))
            d.polygon([(x, 3 * unit), (x + 3 * unit, 3 * unit), (x + 1.5 * unit, unit)], fill=_rgb((0.15, 0.15, 0.18)))
    else:  # pale overcast sky with bare trees
        sky = _jitter(rng, (0.80, 0.83, 0.88), 0.02)
        d.rectangle([0, 0, w, horizon], fill=_rgb(sky))
        bark = _rgb((0.20, 0.17, 0.15))
        for x in range(int(rng.integers(0, 6 * unit)), w, int(rng.integers(7, 12)) * unit):
            _bare_tree(rng, d, x, horizon, horizon * rng.uniform(0.35, 0.5), rng.uniform(-0.1, 0.1), 1.5 * unit, bark)
    if rng.random() < 0.7:  # parked cars along the far kerb
        x = -int(rng.integers(0, 10 * unit))
        while x < w:
            car_w = int(rng.integers(10, 14)) * unit
            _draw_car(ImageDraw.Draw(img), x, horizon + unit, car_w, _colour(rng, neutral_prob=0.6) * 0.8, facing=1)
            x += car_w + int(rng.integers(1, 8)) * unit
    grass_band = horizon + int(rng.integers(1, 3)) * unit
    grass = _jitter(rng, rng.choice([(0.42, 0.45, 0.30), (0.88, 0.90, 0.93), (0.50, 0.46, 0.34)]), 0.03)
    d.rectangle([0, horizon + 2, w, grass_band], fill=_rgb(grass))
    asphalt = _jitter(rng, (0.33, 0.33, 0.35), 0.03)
    d.rectangle([0, grass_band, w, h], fill=_rgb(asphalt))
    stripe = _rgb(rng.choice([(0.92, 0.92, 0.88), (0.90, 0.78, 0.25)]))
    slope = rng.uniform(-0.6, 0.6)
    if rng.random() < 0.5:  # crosswalk bars
        for x in range(int(rng.integers(0, 4 * unit)), w + h, 5 * unit):
            far = grass_band + unit
            d.polygon([(x, h), (x + 2 * unit, h), (x + 2 * unit + slope * h, far), (x + slope * h, far)], fill=stripe)
    else:  # dashed lane line
        y0 = grass_band + (h - grass_band) * rng.uniform(0.3, 0.7)
        for x in range(0, w, 6 * unit):
            x1 = x + 3 * unit
            d.line([(x, y0 + slope * x * 0.2), (x1, y0 + slope * x1 * 0.2)], fill=stripe, width=unit)
    return _to_float(img)


def _bare_tree(rng, d, x, y, length, angle, width, colour, depth=0):
    """A branch from (x, y) that forks into two thinner ones, three levels deep."""
    end = (x + np.sin(angle) * length, y - np.cos(angle) * length)
    d.line([(x, y), end], fill=colour, width=max(1, int(width)))
    if depth < 3:
        for spread in (-1, 1):
            _bare_tree(rng, d, end[0], end[1], length * rng.uniform(0.55, 0.75), angle + spread * rng.uniform(0.3, 0.7),
                       width * 0.6, colour, depth + 1)


def _scene_cuhk(rng, h, w):
    """Indoor corridor: pale wall with pillars, doors and boards, fluorescent strips, polished checker floor."""
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.55, 0.68))
    unit = max(2, h // 40)
    wall = _jitter(rng, rng.choice([(0.74, 0.80, 0.72), (0.84, 0.78, 0.64), (0.78, 0.78, 0.84)]), 0.03)
    d.rectangle([0, 0, w, horizon], fill=_rgb(wall))
    d.rectangle([0, 0, w, 2 * unit], fill=_rgb(wall * 0.85))
    for x in range(int(rng.integers(0, 6 * unit)), w, int(rng.integers(9, 14)) * unit):  # ceiling lights
        d.rectangle([x, 0, x + 5 * unit, unit], fill=(250, 250, 240))
    pillar = _rgb(wall * rng.uniform(0.75, 0.9))
    pitch = int(rng.integers(16, 24)) * unit
    for x in range(int(rng.integers(0, pitch)), w, pitch):
        d.rectangle([x, 0, x + 3 * unit, horizon], fill=pillar)
        door_x = x + int(rng.integers(5, 9)) * unit
        if rng.random() < 0.6:
            door = _rgb(_jitter(rng, (0.45, 0.30, 0.18), 0.05))
            d.rectangle([door_x, int(horizon * 0.3), door_x + 5 * unit, horizon], fill=door)
            knob_x, knob_y = door_x + 4 * unit, int(horizon * 0.65)
            d.ellipse([knob_x - 1, knob_y, knob_x + 1, knob_y + 2], fill=(200, 190, 120))
        else:
            board = _rgb(_jitter(rng, (0.55, 0.42, 0.30), 0.04))
            d.rectangle([door_x, int(horizon * 0.35), door_x + 6 * unit, int(horizon * 0.6)], fill=board)
            for _ in range(4):
                px, py = door_x + rng.integers(0, 5 * unit), int(horizon * rng.uniform(0.36, 0.55))
                d.rectangle([px, py, px + unit, py + unit], fill=_rgb(_colour(rng, neutral_prob=0.3)))
    d.rectangle([0, horizon - unit, w, horizon], fill=_rgb(wall * 0.6))  # skirting board
    tile_a = _jitter(rng, rng.choice([(0.70, 0.68, 0.62), (0.62, 0.64, 0.66), (0.76, 0.70, 0.60)]), 0.03)
    tile_b = tile_a * rng.uniform(0.85, 0.93)
    floor = np.zeros((h - horizon, w, 3), np.float32)
    yy, xx = np.mgrid[0 : h - horizon, 0:w]
    size = 3 * unit
    depth = 1 + yy / max(1, h - horizon)
    checker = ((xx / (size * depth)).astype(int) + (np.log1p(yy / size) * 4).astype(int)) % 2
    floor[:] = np.where(checker[..., None] == 0, tile_a, tile_b)
    glare = np.exp(-(((xx - w * rng.uniform(0.2, 0.8)) / (0.4 * w)) ** 2)) * (1 - yy / (h - horizon))
    floor += 0.12 * glare[..., None]
    scene = _to_float(img)
    scene[horizon:] = floor
    return scene


# ----------------------------------------------------------------------------------------------------
# People and vehicles, drawn at twice the image resolution and box-downsampled (anti-aliasing)
# ----------------------------------------------------------------------------------------------------


class _Painter:
    """Draws shapes on an RGB image and, with a part label, on a label map of the same size."""

    def __init__(self, size):
        self.rgb = Image.new("RGB", size)
        self.label = Image.new("L", size)
        self._rgb = ImageDraw.Draw(self.rgb)
        self._label = ImageDraw.Draw(self.label)

    def ellipse(self, cx, cy, rx, ry, colour, label):
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        self._rgb.ellipse(box, fill=_rgb(colour))
        self._label.ellipse(box, fill=label)

    def polygon(self, points, colour, label):
        self._rgb.polygon(points, fill=_rgb(colour))
        self._label.polygon(points, fill=label)

    def limb(self, points, colours, width, label):
        """A thick polyline with round joints; colours[i] paints segment i (e.g. sleeve then skin)."""
        for (a, b), colour in zip(zip(points[:-1], points[1:]), colours):
            self._rgb.line([a, b], fill=_rgb(colour), width=int(width))
            self._label.line([a, b], fill=label, width=int(width))
            self.ellipse(b[0], b[1], width / 2, width / 2, colour, label)
        self.ellipse(points[0][0], points[0][1], width / 2, width / 2, colours[0], label)

    def pattern(self, points, base, second, kind, box, label):
        """The torso polygon filled with a clothing pattern (solid, stripes, open jacket, chest logo)."""
        x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
        x1, y1 = int(np.ceil(box[2])) + 1, int(np.ceil(box[3])) + 1
        mask = Image.new("L", (x1 - x0, y1 - y0))
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in points], fill=255)
        h, w = y1 - y0, x1 - x0
        yy, xx = np.arange(h)[:, None], np.arange(w)[None, :]
        period = max(2.0, h / 7)
        if kind == "hstripes":
            use_second = (yy // period) % 2 == 1
        elif kind == "vstripes":
            use_second = (xx // (period * 0.8)) % 2 == 1
        elif kind == "jacket":
            use_second = np.abs(xx - w / 2) < w * 0.14
        elif kind == "logo":
            use_second = (np.abs(xx - w / 2) < w * 0.18) & (np.abs(yy - 0.35 * h) < h * 0.12)
        else:
            use_second = np.zeros((1, 1), bool)
        fill = np.where(np.broadcast_to(use_second, (h, w))[..., None], second, base)
        self.rgb.paste(Image.fromarray((255 * fill + 0.5).astype(np.uint8)), (x0, y0), mask)
        self.label.paste(label, (x0, y0, x1, y1), mask)


def _draw_person(rng, identity, size, height, cx, feet_y):
    """One walking person on a blank canvas.

    Args:
        size: (width, height) of the canvas in pixels.
        height: person height in pixels; cx, feet_y: horizontal centre and foot line.
    Returns:
        rgb: PIL RGB image (shaded); labels: PIL "L" image of the _HEAD.._BAG part ids (0 = not the person).
    """
    p = _Painter(size)
    view = rng.choice(["front", "back", "side"])
    facing = rng.choice([-1, 1])
    phase = rng.uniform(-1, 1)
    side = view == "side"
    top = feet_y - height
    head_r = 0.068 * height
    shoulder_y = top + 2 * head_r + 0.03 * height
    hip_y = top + 0.50 * height
    knee_y = top + 0.73 * height
    sw = (0.08 if side else 0.13) * height * identity["build_w"]
    hw = (0.07 if side else 0.105) * height * identity["build_w"]
    arm_w, leg_w = 0.06 * height * identity["build_w"], 0.085 * height * identity["build_w"]
    shoe_h = 0.035 * height
    skin, upper, lower = identity["skin"], identity["upper"], identity["lower"]
    bag, bag_colour = identity["bag"], identity["bag_colour"]

    def leg_points(sign, lift_sign):
        hip_x = cx + (0 if side else sign * hw * 0.5)
        if side:
            angle = sign * phase * 0.45
            length = feet_y - shoe_h - hip_y
            knee = (hip_x + np.sin(angle) * length * 0.5 + facing * 0.02 * height, hip_y + np.cos(angle) * length * 0.5)
            foot = (hip_x + np.sin(angle) * length, hip_y + np.cos(angle) * length)
        else:
            lift = max(0.0, lift_sign * phase) * 0.04 * height
            foot = (hip_x + sign * 0.015 * height, feet_y - shoe_h - lift)
            knee = ((hip_x + foot[0]) / 2, knee_y - lift / 2)
        return [(hip_x, hip_y), knee, foot]

    def arm_points(sign, swing):
        shoulder = (cx + (0 if side else sign * (sw - arm_w / 2)), shoulder_y + arm_w / 2)
        length = 0.34 * height
        if side:
            angle = swing * 0.5 * facing
            hand = (shoulder[0] + np.sin(angle) * length, shoulder[1] + np.cos(angle) * length)
            elbow = ((shoulder[0] + hand[0]) / 2 - facing * 0.01 * height, (shoulder[1] + hand[1]) / 2)
        else:
            hand = (shoulder[0] + sign * 0.035 * height, shoulder[1] + length * (1 - 0.05 * abs(swing)))
            elbow = ((shoulder[0] + hand[0]) / 2 + sign * 0.01 * height, (shoulder[1] + hand[1]) / 2)
        return [shoulder, elbow, hand]

    def draw_leg(sign, label):
        points = leg_points(sign, sign)
        if identity["lower_style"] == "trousers":
            colours = [lower, lower]
        elif identity["lower_style"] == "shorts":
            colours = [lower, skin]
        else:
            colours = [skin * 0.9, skin * 0.9]
        p.limb(points, colours, leg_w, label)
        foot = points[-1]
        toe = facing * 0.03 * height if side else 0
        shoe_w = leg_w * (0.8 if side else 0.6)
        p.ellipse(foot[0] + toe, foot[1] + shoe_h * 0.3, shoe_w, shoe_h, identity["shoes"], label)

    def draw_arm(sign, swing, label):
        colours = [upper, upper] if identity["sleeves"] == "long" else [upper, skin]
        points = arm_points(sign, swing)
        p.limb(points, colours, arm_w, label)
        hand = points[-1]
        p.ellipse(hand[0], hand[1], arm_w * 0.55, arm_w * 0.6, skin, label)
        return hand

    back_x = cx - facing * (sw + 0.03 * height) if side else cx
    pack_w, pack_h = (0.09 if side else 0.2) * height, 0.22 * height
    if bag == "backpack" and view != "back":
        p.polygon(_rect(back_x - pack_w / 2 if side else cx - sw - 0.015 * height, shoulder_y + 0.01 * height,
                        pack_w if side else 2 * sw + 0.03 * height, pack_h), bag_colour, _BAG)
    if identity["long_hair"] and view != "back":
        hair_h = shoulder_y - top + 0.05 * height - head_r
        p.polygon(_rect(cx - head_r * 1.05, top + head_r, 2.1 * head_r, hair_h), identity["hair"], _HEAD)

    draw_leg(-1, _LEG_A)
    draw_leg(1, _LEG_B)
    if side:
        draw_arm(-1, phase, _ARM_A)  # far arm, behind the torso
    torso_bottom = hip_y + 0.04 * height
    torso = [(cx - sw, shoulder_y), (cx + sw, shoulder_y)] + [(cx + k * hw * 1.05, torso_bottom) for k in (1, -1)]
    waist = hip_y - 0.02 * height
    if identity["lower_style"] == "skirt":
        p.polygon([(cx - hw, waist), (cx + hw, waist), (cx + hw * 1.6, knee_y), (cx - hw * 1.6, knee_y)], lower, _TRUNK)
    elif side or view != "front":  # seat of the trousers, seen below the jacket from behind or the side
        p.polygon(_rect(cx - hw, waist, 2 * hw, 0.08 * height), lower, _TRUNK)
    p.ellipse(cx - sw + arm_w / 2, shoulder_y + arm_w / 2, arm_w / 2 + 1, arm_w / 2 + 1, upper, _TRUNK)
    p.ellipse(cx + sw - arm_w / 2, shoulder_y + arm_w / 2, arm_w / 2 + 1, arm_w / 2 + 1, upper, _TRUNK)
    # Stripes go all round; a jacket opening or a chest logo is only seen from the front.
    pattern = identity["pattern"] if view == "front" or identity["pattern"] in ("hstripes", "vstripes") else "solid"
    p.pattern(torso, upper, identity["upper2"], pattern, (cx - sw, shoulder_y, cx + sw, torso_bottom), _TRUNK)
    if bag == "backpack" and view == "back":
        p.polygon(_rect(cx - pack_w / 2, shoulder_y + 0.02 * height, pack_w, pack_h), bag_colour, _BAG)
    if bag == "backpack" and view == "front":
        for sign in (-1, 1):
            x = cx + sign * sw * 0.55
            strap = [(x, shoulder_y), (x + sign * 0.01 * height, shoulder_y + 0.16 * height)]
            p.limb(strap, [bag_colour * 0.8], max(2, 0.02 * height), _BAG)
    if bag == "shoulder":
        strap_side = facing if side else rng.choice([-1, 1])
        bag_x = cx - strap_side * (hw + 0.02 * height)
        strap = [(cx + strap_side * sw * 0.6, shoulder_y), (bag_x, waist)]
        p.limb(strap, [bag_colour * 0.7], max(2, 0.018 * height), _BAG)
        p.polygon(_rect(bag_x - 0.06 * height, hip_y - 0.04 * height, 0.12 * height, 0.1 * height), bag_colour, _BAG)
    hands = []
    if side:
        hands.append(draw_arm(1, -phase, _ARM_B))
    else:
        hands.append(draw_arm(-1, phase, _ARM_A))
        hands.append(draw_arm(1, -phase, _ARM_B))
    if bag == "handbag":
        hx, hy = hands[int(rng.integers(len(hands)))]
        handle = [(hx - 0.02 * height, hy + 0.03 * height), (hx, hy), (hx + 0.02 * height, hy + 0.03 * height)]
        p.limb(handle, [bag_colour * 0.7] * 2, max(2, 0.012 * height), _BAG)
        p.polygon(_rect(hx - 0.055 * height, hy + 0.03 * height, 0.11 * height, 0.09 * height), bag_colour, _BAG)
    head_cx, head_cy = cx + (facing * 0.01 * height if side else 0), top + head_r
    p.ellipse(head_cx, head_cy, head_r * 0.88, head_r, skin, _HEAD)
    if view == "back":
        p.ellipse(head_cx, head_cy, head_r * 0.9, head_r * 1.02, identity["hair"], _HEAD)
        if identity["long_hair"]:
            hair_h = shoulder_y - head_cy + 0.07 * height
            p.polygon(_rect(cx - head_r * 0.9, head_cy, 1.8 * head_r, hair_h), identity["hair"], _HEAD)
    else:
        cap_dx = -facing * 0.25 * head_r if side else 0
        p.ellipse(head_cx + cap_dx, head_cy - 0.55 * head_r, head_r * 0.9, head_r * 0.5, identity["hair"], _HEAD)
    # Soft cylinder shading so bodies read as round, not flat stickers.
    xx = np.arange(size[0], dtype=np.float32)
    shade = np.clip(1 - 0.3 * ((xx - cx) / (sw * 1.6)) ** 2, 0.7, 1)
    shade = Image.fromarray(np.repeat((255 * shade + 0.5).astype(np.uint8)[None, :, None], 3, axis=2))
    return ImageChops.multiply(p.rgb, shade.resize(size, Image.NEAREST)), p.label


def _rect(x, y, w, h):
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _draw_car(d, x, bottom, length, colour, facing):
    """A side-on car whose body spans [x, x + length] and whose wheels touch `bottom`."""
    h = 0.38 * length
    body_top = bottom - 0.55 * h
    d.rounded_rectangle([x, body_top, x + length, bottom - 0.12 * h], radius=max(1, int(0.1 * h)), fill=_rgb(colour))
    roof = bottom - h
    cab = [(x + a * length, y) for a, y in ((0.2, body_top), (0.3, roof), (0.72, roof), (0.85, body_top))]
    if facing < 0:
        cab = [(2 * x + length - px, py) for px, py in cab]
    d.polygon(cab, fill=_rgb(colour * 0.9))
    inner = [(px * 0.9 + sum(q[0] for q in cab) / 40, py + 0.08 * h) for px, py in cab]
    d.polygon(inner, fill=_rgb((0.2, 0.25, 0.3)))
    r = 0.16 * h
    for wx in (x + 0.2 * length, x + 0.8 * length):
        d.ellipse([wx - r, bottom - 2 * r, wx + r, bottom], fill=(25, 25, 25))
        d.ellipse([wx - r / 2, bottom - 1.5 * r, wx + r / 2, bottom - 0.5 * r], fill=(150, 150, 150))


def _draw_bike(d, cx, bottom, size, colour):
    r = 0.22 * size
    width = max(1, int(size / 30))
    for wx in (cx - 0.32 * size, cx + 0.32 * size):
        d.ellipse([wx - r, bottom - 2 * r, wx + r, bottom], outline=(30, 30, 30), width=max(1, width))
    hub_y = bottom - r
    seat, bar = (cx - 0.08 * size, hub_y - 0.35 * size), (cx + 0.22 * size, hub_y - 0.4 * size)
    frame = [(cx - 0.32 * size, hub_y), seat, (cx, hub_y), bar, (cx + 0.32 * size, hub_y)]
    d.line(frame, fill=_rgb(colour), width=max(1, 2 * width))
    d.line([(cx - 0.32 * size, hub_y), (cx, hub_y)], fill=_rgb(colour), width=max(1, 2 * width))


# ----------------------------------------------------------------------------------------------------
# One image: background crop, context, person, camera light, masks
# ----------------------------------------------------------------------------------------------------


def _render_image(rng, identity, camera, config, junk=False):
    """Returns image uint8 [H, W, 3], exact mask uint8 {0,1} [H, W], parser mask uint8 {0,1} [H, W].

    Drawing happens at twice the size with PIL (uint8) and is box-reduced once, for anti-aliased edges;
    a mask pixel is body when at least half of its four sub-pixels are.
    """
    height, width = config["image_height"], config["image_width"]
    big = (2 * width, 2 * height)
    scene = camera["scene_image"]
    x0 = int(rng.integers(0, scene.width - width + 1))
    y0 = int(rng.integers(0, scene.height - height + 1))
    canvas = scene.crop((x0, y0, x0 + width, y0 + height)).resize(big, Image.NEAREST)

    if junk:  # a bad detection: a person far too large or small, mostly out of frame
        person_h = big[1] * rng.choice([rng.uniform(1.5, 2.2), rng.uniform(0.3, 0.45)])
        cx = big[0] * rng.uniform(-0.2, 1.2)
        feet_y = big[1] * rng.uniform(0.6, 1.8)
    else:
        person_h = big[1] * rng.uniform(0.74, 0.9) * identity["build_h"]
        cx = big[0] * (0.5 + rng.uniform(-0.08, 0.08))
        feet_y = big[1] * rng.uniform(0.93, 0.99)

    vehicle = identity["vehicle"] if identity["vehicle"] is not None and rng.random() < 0.7 else None
    if vehicle is None and rng.random() < camera["traffic"]:
        vehicle = _sample_vehicle(rng)
    if vehicle is not None and vehicle["kind"] == "car":
        length = big[0] * rng.uniform(1.4, 2.0)
        x = cx + vehicle["side"] * big[0] * rng.uniform(0.15, 0.35) - (length if vehicle["side"] < 0 else 0)
        _draw_car(ImageDraw.Draw(canvas), x, feet_y - 0.05 * person_h, length, vehicle["colour"], vehicle["side"])
    elif vehicle is not None:
        bike_x = cx + vehicle["side"] * big[0] * rng.uniform(0.2, 0.35)
        _draw_bike(ImageDraw.Draw(canvas), bike_x, feet_y, 0.6 * person_h, vehicle["colour"])

    companion = None
    if identity["companion"] is not None and rng.random() < 0.6:
        side = rng.choice([-1, 1])
        rgb, labels = _draw_person(rng, identity["companion"], big, person_h * rng.uniform(0.9, 1.05),
                                   cx + side * big[0] * rng.uniform(0.5, 0.75), feet_y - rng.uniform(0, 0.04) * big[1])
        companion = _binary(labels)
        canvas.paste(rgb, (0, 0), companion)
        companion = np.asarray(companion.reduce(2)) >= 128
    shadow = Image.new("L", big)
    rx, ry = 0.16 * person_h, 0.025 * person_h
    ImageDraw.Draw(shadow).ellipse([cx - rx, feet_y - ry, cx + rx, feet_y + ry], fill=255)
    canvas.paste(canvas.point(_SHADOW_LUT), (0, 0), shadow)
    rgb, labels = _draw_person(rng, identity, big, person_h, cx, feet_y)
    canvas.paste(rgb, (0, 0), _binary(labels))

    image = np.asarray(canvas.reduce(2), dtype=np.float32) / 255.0
    noise = rng.standard_normal(image.shape, dtype=np.float32) * camera["noise"]
    image = image * camera["light"] + camera["offset"] + noise
    exact = np.asarray(_binary(labels).reduce(2)) >= 128
    parser = _parser_mask(rng, exact, lambda part: np.asarray(_binary(labels, part).reduce(2)) >= 128, companion,
                          identity["bag"] != "none")
    return (255 * np.clip(image, 0, 1) + 0.5).astype(np.uint8), exact.astype(np.uint8), parser.astype(np.uint8)


def _binary(labels, part=None):
    """255 where the label map is the person (part=None) or the given part, else 0 (PIL "L")."""
    return labels.point([0] + [255] * 255 if part is None else [255 if v == part else 0 for v in range(256)])


def _parser_mask(rng, exact, part, companion, has_bag):
    """A human-parser-like mask of `exact` (bool [H, W]) with the errors JPPNet makes on small crops.

    `part(label)` gives the bool [H, W] mask of one body part; `companion` the companion's mask or None.

    Errors: the bag missed (often), one limb missed (sometimes), coarse low-resolution boundaries, edges
    eroded or dilated by 1-2 px, spurious blobs, a bit of a nearby companion taken as body.
    """
    h, w = exact.shape
    scale = max(1, round(h / 64))
    mask = exact.copy()
    if has_bag and rng.random() < 0.65:
        mask &= ~part(_BAG)
    if rng.random() < 0.15:
        limb = int(rng.choice([_ARM_A, _ARM_B, _LEG_A, _LEG_B]))
        missed = part(limb)
        rows = np.nonzero(missed.any(axis=1))[0]
        if rows.size:
            cut = rows[0] + int(0.55 * (rows[-1] - rows[0])) if limb in (_LEG_A, _LEG_B) else rows[0]
            missed[:cut] = False
            mask &= ~missed
    if rng.random() < 0.6:  # the parser runs at low resolution: blobby boundaries
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize((max(2, w // 4), max(2, h // 4)), Image.BILINEAR)
        mask = np.asarray(small.resize((w, h), Image.BILINEAR)) >= rng.uniform(100, 150)
    radius = int(rng.choice([-1, 0, 1], p=[0.3, 0.4, 0.3])) * scale
    if radius:
        image = Image.fromarray(mask.astype(np.uint8) * 255)
        grow_or_shrink = ImageFilter.MaxFilter(2 * radius + 1) if radius > 0 else ImageFilter.MinFilter(1 - 2 * radius)
        image = image.filter(grow_or_shrink)
        mask = np.asarray(image) > 127
    if companion is not None and rng.random() < 0.4:
        mask |= companion & (np.abs(np.arange(w) - w / 2) < w * 0.4)[None, :]
    rows, cols = np.nonzero(exact)
    if rows.size and rng.random() < 0.35:
        yy, xx = np.ogrid[0:h, 0:w]
        for _ in range(int(rng.integers(1, 3))):
            by = rng.uniform(rows.min(), rows.max())
            bx = rng.choice([cols.min(), cols.max()]) + rng.normal(0, 0.06 * w)
            ry, rx = rng.uniform(0.03, 0.08) * h, rng.uniform(0.06, 0.15) * w
            mask |= ((yy - by) / ry) ** 2 + ((xx - bx) / rx) ** 2 < 1
    return mask


# ----------------------------------------------------------------------------------------------------
# Contact sheet
# ----------------------------------------------------------------------------------------------------


def _contact_sheet(samples, config, tiles_per_row=6):
    """A PNG-ready image: per domain, tiles of [image | parser mask | parser vs exact].

    In the third panel white = both masks, red = body the parser missed, cyan = parser false positive.
    """
    height, width = config["image_height"], config["image_width"]
    tile_w, gap, header = 3 * width + 6, 6, 14
    rows = []
    for name, per_camera in samples.items():
        # Round-robin over cameras, preferring identities not shown yet, so the rows show many people.
        pending = [list(v) for _, v in sorted(per_camera.items())]
        chosen, seen = [], set()
        while len(chosen) < 2 * tiles_per_row and any(pending):
            for queue in pending:
                if queue and len(chosen) < 2 * tiles_per_row:
                    pick = queue.pop(next((i for i, sample in enumerate(queue) if sample[3].split()[0] not in seen), 0))
                    seen.add(pick[3].split()[0])
                    chosen.append(pick)
        rows.append((name, chosen))
    sheet_w = tiles_per_row * (tile_w + gap) + gap
    row_h = header + 2 * (height + header)
    sheet = Image.new("RGB", (sheet_w, len(rows) * row_h + gap), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for r, (name, chosen) in enumerate(rows):
        top = r * row_h + gap
        draw.text((gap, top), name, fill=(255, 255, 160))
        for i, (image, parser, exact, caption) in enumerate(chosen):
            x = gap + (i % tiles_per_row) * (tile_w + gap)
            y = top + header + (i // tiles_per_row) * (height + header)
            errors = np.zeros(image.shape, np.uint8)
            errors[(parser == 1) & (exact == 1)] = 255
            errors[(parser == 0) & (exact == 1)] = (230, 40, 40)
            errors[(parser == 1) & (exact == 0)] = (40, 220, 230)
            sheet.paste(Image.fromarray(image), (x, y))
            sheet.paste(Image.fromarray(np.repeat(parser[..., None] * np.uint8(255), 3, axis=2)), (x + width + 3, y))
            sheet.paste(Image.fromarray(errors), (x + 2 * width + 6, y))
            draw.text((x, y + height + 1), caption, fill=(220, 220, 220))
    return sheet
