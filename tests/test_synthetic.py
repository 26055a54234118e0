"""Tests of the synthetic re-ID world: layout, determinism, masks, and that the background shift is real."""

import hashlib
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bgshift_tf.data import synthetic

# Market-1501 naming, written independently of the data layer's parser: pid (4 digits or -1), camera, sequence,
# frame (6 digits), detection index (2 digits).
MARKET_NAME = re.compile(r"^(?P<pid>-1|\d{4})_c(?P<camera>\d)s(?P<seq>\d+)_(?P<frame>\d{6})_(?P<det>\d{2})\.jpg$")
FOLDERS = {"bounding_box_train": "train", "query": "query", "bounding_box_test": "gallery"}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "tiny"
    synthetic.make_world(out, preset="tiny", seed=0)
    return out


def _records(world_dir):
    """[(domain, folder, pid, camera, image path)] parsed from the file names."""
    out = []
    for domain in synthetic.load_world(world_dir)["domains"]:
        for folder in FOLDERS:
            for name in sorted(os.listdir(os.path.join(world_dir, domain["name"], folder))):
                match = MARKET_NAME.match(name)
                assert match, f"{domain['name']}/{folder}/{name} does not follow the Market-1501 naming"
                path = os.path.join(world_dir, domain["name"], folder, name)
                out.append((domain["name"], folder, int(match["pid"]), int(match["camera"]), path))
    return out


def _mask(image_path, exact):
    domain_dir, folder, name = image_path.rsplit(os.sep, 2)
    sub = synthetic.EXACT_MASK_FOLDER if exact else synthetic.MASK_FOLDER
    return np.asarray(Image.open(os.path.join(domain_dir, sub, folder, name[:-4] + ".png")))


def _tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_layout_naming_and_splits(world_dir):
    world = synthetic.load_world(world_dir)
    assert [d["name"] for d in world["domains"]] == ["synmarket", "synduke", "syncuhk"]
    assert [d["num_cameras"] for d in world["domains"]] == [6, 8, 2]
    assert os.path.isfile(os.path.join(world_dir, "contact_sheet.png"))
    records = _records(world_dir)
    assert 100 <= len(records) <= 200
    ids_per_domain = {}
    for domain in world["domains"]:
        mine = [r for r in records if r[0] == domain["name"]]
        assert max(r[3] for r in mine) <= domain["num_cameras"] and min(r[3] for r in mine) >= 1
        train_images = [r for r in mine if r[1] == "bounding_box_train"]
        train = {r[2] for r in train_images}
        query = [r for r in mine if r[1] == "query"]
        gallery = [r for r in mine if r[1] == "bounding_box_test"]
        assert train == set(domain["train_pids"]) and not train & {r[2] for r in query}
        assert {r[2] for r in query} == set(domain["test_pids"])
        assert 0 not in train and -1 not in train and any(r[2] == 0 for r in gallery)
        assert any(r[2] == -1 for r in gallery) == (domain["name"] == "synmarket")
        ids_per_domain[domain["name"]] = train | {r[2] for r in query}
        for pid in ids_per_domain[domain["name"]]:
            assert len({r[3] for r in mine if r[2] == pid}) >= 2, f"{domain['name']} pid {pid} seen by one camera only"
        # Market style: one query per (test id, camera), and each query has a true match in another camera.
        assert len({(r[2], r[3]) for r in query}) == len(query)
        for _, _, pid, camera, _ in query:
            assert any(g[2] == pid and g[3] != camera for g in gallery)
        counts = domain["counts"]
        assert (counts["train"], counts["query"], counts["gallery"]) == (len(train_images), len(query), len(gallery))
    names = list(ids_per_domain)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids_per_domain[a] & ids_per_domain[b], f"ids shared by {a} and {b}"


def test_masks_match_images_and_parser_is_noisy(world_dir):
    ious = []
    for _, _, pid, _, path in _records(world_dir):
        image = np.asarray(Image.open(path))
        parser, exact = _mask(path, exact=False), _mask(path, exact=True)
        assert image.shape == (64, 32, 3)
        assert parser.shape == exact.shape == (64, 32) and parser.dtype == np.uint8
        assert set(np.unique(parser)) <= {0, 255} and set(np.unique(exact)) <= {0, 255}
        if pid > 0:
            assert 0.05 < (exact > 0).mean() < 0.6  # a whole person is in view
            ious.append(np.logical_and(parser, exact).sum() / np.logical_or(parser, exact).sum())
    ious = np.array(ious)
    assert 0.6 <= ious.mean() <= 0.95, ious.mean()
    assert (ious < 0.999).mean() > 0.8  # nearly every parser mask has some error


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    small = {"num_ids": 4, "images_per_id": 4, "num_distractors": 1, "num_junk": 1}
    digests = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synthetic.make_world(tmp_path / name, preset="tiny", seed=seed, **small)
        digests.append(_tree_digest(tmp_path / name))
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_finished_world_is_reused_and_unfinished_or_changed_is_redone(tmp_path):
    out = tmp_path / "w"
    small = {"num_ids": 2, "images_per_id": 4, "num_distractors": 0, "num_junk": 0, "domains": ["syncuhk"]}
    world = synthetic.make_world(out, preset="tiny", seed=0, **small)
    stamp = os.stat(out / "world.json").st_mtime_ns
    assert synthetic.make_world(out, preset="tiny", seed=0, **small) == world
    assert os.stat(out / "world.json").st_mtime_ns == stamp
    # A different setting regenerates (and replaces) the world.
    bigger = synthetic.make_world(out, preset="tiny", seed=0, **{**small, "num_ids": 3})
    only_domain = bigger["domains"][0]
    assert bigger["config"]["num_ids"] == 3 and len(only_domain["train_pids"] + only_domain["test_pids"]) == 3
    # An interrupted run (no world.json) is not taken as finished.
    os.remove(out / "world.json")
    with pytest.raises(FileNotFoundError, match="world.json"):
        synthetic.load_world(out)
    assert synthetic.make_world(out, preset="tiny", seed=0, **small)["config"]["num_ids"] == 2
    assert not os.path.exists(str(out) + ".partial")
    assert json.loads((out / "world.json").read_text())["seed"] == 0


def test_bad_settings_and_foreign_folders_raise(tmp_path):
    with pytest.raises(ValueError, match="preset='huge'"):
        synthetic.make_world(tmp_path / "x", preset="huge")
    with pytest.raises(ValueError, match="num_idz"):
        synthetic.make_world(tmp_path / "x", num_idz=3)
    with pytest.raises(ValueError, match="synmars"):
        synthetic.make_world(tmp_path / "x", domains=["synmars"])
    with pytest.raises(ValueError, match="images_per_id=2"):
        synthetic.make_world(tmp_path / "x", images_per_id=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="Refusing"):
        synthetic.make_world(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def _colour_features(image, mask):
    """4x4x4 joint RGB histogram + channel mean/std of the pixels under `mask` (70 floats)."""
    pixels = image[mask].astype(np.float32)
    bins = (pixels // 64).astype(int) @ np.array([16, 4, 1])
    return np.concatenate([np.bincount(bins, minlength=64) / len(pixels), pixels.mean(0) / 255, pixels.std(0) / 255])


def _held_out_accuracy(features, labels, is_train):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    model.fit(features[is_train], labels[is_train])
    return float((model.predict(features[~is_train]) == labels[~is_train]).mean())


def test_background_shift_is_measurable_and_lives_in_the_background(world_dir):
    domain_names = [d["name"] for d in synthetic.load_world(world_dir)["domains"]]
    background, foreground, domains, cameras, is_train = [], [], [], [], []
    for domain, folder, pid, camera, path in _records(world_dir):
        if pid <= 0:
            continue
        image, exact = np.asarray(Image.open(path)), _mask(path, exact=True) > 0
        background.append(_colour_features(image, ~exact))
        foreground.append(_colour_features(image, exact))
        domains.append(domain_names.index(domain))
        cameras.append(10 * domain_names.index(domain) + camera)
        is_train.append(folder == "bounding_box_train")
    background, foreground = np.array(background), np.array(foreground)
    domains, cameras, is_train = np.array(domains), np.array(cameras), np.array(is_train)
    # Held out = the test identities (query + gallery), never seen in training.
    domain_from_background = _held_out_accuracy(background, domains, is_train)
    domain_from_foreground = _held_out_accuracy(foreground, domains, is_train)
    camera_from_background = _held_out_accuracy(background, cameras, is_train)
    assert domain_from_background >= 0.9
    assert domain_from_foreground <= domain_from_background - 0.2
    assert camera_from_background >= 0.5  # 16 cameras: chance is ~0.06
    # The domain is a background *family*: it is recognised on cameras never seen in training too (train ids
    # of the other 15 cameras -> test ids of the held-out one). One shared family for all cameras scores ~0.1.
    unseen_camera_hits = {"background": 0, "foreground": 0}
    held_out = 0
    for camera in np.unique(cameras):
        fit, test = is_train & (cameras != camera), ~is_train & (cameras == camera)
        if not test.any():
            continue
        held_out += test.sum()
        for part, features in (("background", background), ("foreground", foreground)):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(features[fit], domains[fit])
            unseen_camera_hits[part] += (model.predict(features[test]) == domains[test]).sum()
    assert unseen_camera_hits["background"] / held_out >= 0.7
    assert unseen_camera_hits["foreground"] / held_out <= 0.6
    # Within each domain, every pair of cameras has visibly different mean background colour.
    for d in range(len(domain_names)):
        means = [background[cameras == c, 64:67].mean(0) for c in np.unique(cameras[domains == d])]
        gaps = [np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1 :]]
        assert min(gaps) > 0.01, (domain_names[d], gaps)


def _tile_box(sheet, colour):
    """(top, left, bottom, right) of the pixels of `colour` in `sheet` (uint8 [H, W, 3])."""
    rows, cols = np.nonzero(np.all(sheet == colour, axis=-1))
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def test_contact_sheet_rows_per_domain_round_robin_and_mask_errors():
    from bgshift_tf.data.synthetic.contact_sheet import contact_sheet

    height, width = 8, 4
    exact = np.zeros((height, width), np.uint8)
    exact[:, : width // 2] = 1  # body: the left half
    parser = np.zeros((height, width), np.uint8)
    parser[: height // 2] = 1  # parser: the top half (misses bottom-left, takes top-right)

    def sample(value, caption):
        return np.full((height, width, 3), value, np.uint8), parser, exact, caption

    samples = {
        "a": {1: [sample(11, "0001 c1")]},
        # Camera 1 shows 0005 first; camera 2 then prefers 0007 (not shown yet) over 0005.
        "b": {1: [sample(21, "0005 c1"), sample(22, "0006 c1")], 2: [sample(23, "0005 c2"), sample(24, "0007 c2")]},
    }
    sheet = np.asarray(contact_sheet(samples, {"image_height": height, "image_width": width}))
    boxes = {value: _tile_box(sheet, (value,) * 3) for value in (11, 21, 22, 23, 24)}
    for top, left, bottom, right in boxes.values():
        assert (bottom - top, right - left) == (height, width)
    assert boxes[11][2] <= min(boxes[v][0] for v in (21, 22, 23, 24))  # one block of rows per domain, in order
    order = sorted((21, 22, 23, 24), key=lambda v: (boxes[v][0], boxes[v][1]))
    assert order == [21, 24, 22, 23]  # round-robin over cameras, unseen identities first
    # Panels right of each image: the parser mask (0/255), then white = both, red = missed, cyan = false positive.
    top, left, _, _ = boxes[11]
    panels = [sheet[top : top + height, left + k * (width + 3) : left + k * (width + 3) + width] for k in (1, 2)]
    np.testing.assert_array_equal(panels[0], np.repeat(parser[..., None] * 255, 3, axis=2))
    assert (panels[1][0, 0] == 255).all() and (panels[1][0, -1] == (40, 220, 230)).all()
    assert (panels[1][-1, 0] == (230, 40, 40)).all() and (panels[1][-1, -1] == 0).all()
