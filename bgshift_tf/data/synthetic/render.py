"""Rendering one image of the synthetic world, and the noisy "parser" mask that comes with it.

An image is a crop of its camera's scene, sometimes the identity's vehicle or companion (ID-related context,
paper §4), a foot shadow, the person, then the camera's light and sensor noise. Its exact mask is the person's
label map (bag included); its parser mask imitates the mistakes a human parser (JPPNet) makes on small crops.

Drawing happens at twice the size with PIL (uint8) and is box-reduced once, for anti-aliased edges; a mask
pixel is body when at least half of its four sub-pixels are.
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bgshift_tf.data.synthetic.people import ARM_A, ARM_B, BAG, LEG_A, LEG_B, draw_person
from bgshift_tf.data.synthetic.vehicles import draw_bike, draw_car, sample_vehicle

_SHADOW_LUT = [int(0.6 * v) for v in range(256)] * 3  # darkens all three channels to 60%


def render_image(rng, identity, camera, config, junk=False):
    """Returns image uint8 [H, W, 3], exact mask uint8 {0,1} [H, W], parser mask uint8 {0,1} [H, W].

    `camera` is a scenes.make_camera dict; `junk` draws a bad detection (pid -1 in Market-1501).
    """
    height, width = config["image_height"], config["image_width"]
    big = (2 * width, 2 * height)
    scene = camera["scene_image"]
    x0 = int(rng.integers(0, scene.width - width + 1))
    y0 = int(rng.integers(0, scene.height - height + 1))
    canvas = scene.crop((x0, y0, x0 + width, y0 + height)).resize(big, Image.NEAREST)
    person_h, cx, feet_y = _placement(rng, identity, big, junk)
    _draw_vehicle(rng, canvas, identity, camera, person_h, cx, feet_y)
    companion = _draw_companion(rng, canvas, identity, person_h, cx, feet_y)
    shadow = Image.new("L", big)
    rx, ry = 0.16 * person_h, 0.025 * person_h
    ImageDraw.Draw(shadow).ellipse([cx - rx, feet_y - ry, cx + rx, feet_y + ry], fill=255)
    canvas.paste(canvas.point(_SHADOW_LUT), (0, 0), shadow)
    rgb, labels = draw_person(rng, identity, big, person_h, cx, feet_y)
    canvas.paste(rgb, (0, 0), _binary(labels))

    image = np.asarray(canvas.reduce(2), dtype=np.float32) / 255.0
    noise = rng.standard_normal(image.shape, dtype=np.float32) * camera["noise"]
    image = image * camera["light"] + camera["offset"] + noise
    exact = np.asarray(_binary(labels).reduce(2)) >= 128
    parser = _parser_mask(rng, exact, lambda part: np.asarray(_binary(labels, part).reduce(2)) >= 128, companion,
                          identity["bag"] != "none")
    return (255 * np.clip(image, 0, 1) + 0.5).astype(np.uint8), exact.astype(np.uint8), parser.astype(np.uint8)


def _placement(rng, identity, big, junk):
    """(person height, horizontal centre, foot line) on the double-size canvas `big` (width, height)."""
    if junk:  # a bad detection: a person far too large or small, mostly out of frame
        person_h = big[1] * rng.choice([rng.uniform(1.5, 2.2), rng.uniform(0.3, 0.45)])
        cx = big[0] * rng.uniform(-0.2, 1.2)
        feet_y = big[1] * rng.uniform(0.6, 1.8)
    else:
        person_h = big[1] * rng.uniform(0.74, 0.9) * identity["build_h"]
        cx = big[0] * (0.5 + rng.uniform(-0.08, 0.08))
        feet_y = big[1] * rng.uniform(0.93, 0.99)
    return person_h, cx, feet_y


def _draw_vehicle(rng, canvas, identity, camera, person_h, cx, feet_y):
    """Often the identity's own car or bike beside the person; else, now and then, a passing one (camera traffic)."""
    vehicle = identity["vehicle"] if identity["vehicle"] is not None and rng.random() < 0.7 else None
    if vehicle is None and rng.random() < camera["traffic"]:
        vehicle = sample_vehicle(rng)
    if vehicle is None:
        return
    if vehicle["kind"] == "car":
        length = canvas.width * rng.uniform(1.4, 2.0)
        x = cx + vehicle["side"] * canvas.width * rng.uniform(0.15, 0.35) - (length if vehicle["side"] < 0 else 0)
        draw_car(ImageDraw.Draw(canvas), x, feet_y - 0.05 * person_h, length, vehicle["colour"], vehicle["side"])
    else:
        bike_x = cx + vehicle["side"] * canvas.width * rng.uniform(0.2, 0.35)
        draw_bike(ImageDraw.Draw(canvas), bike_x, feet_y, 0.6 * person_h, vehicle["colour"])


def _draw_companion(rng, canvas, identity, person_h, cx, feet_y):
    """Sometimes the identity's companion walking beside it; returns its mask, bool [H, W] at image size, or None."""
    if identity["companion"] is None or rng.random() >= 0.6:
        return None
    big = canvas.size
    side = rng.choice([-1, 1])
    rgb, labels = draw_person(rng, identity["companion"], big, person_h * rng.uniform(0.9, 1.05),
                              cx + side * big[0] * rng.uniform(0.5, 0.75), feet_y - rng.uniform(0, 0.04) * big[1])
    companion = _binary(labels)
    canvas.paste(rgb, (0, 0), companion)
    return np.asarray(companion.reduce(2)) >= 128


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
        mask &= ~part(BAG)
    if rng.random() < 0.15:
        limb = int(rng.choice([ARM_A, ARM_B, LEG_A, LEG_B]))
        missed = part(limb)
        rows = np.nonzero(missed.any(axis=1))[0]
        if rows.size:
            cut = rows[0] + int(0.55 * (rows[-1] - rows[0])) if limb in (LEG_A, LEG_B) else rows[0]
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
