"""Scenes of the synthetic world: each camera's wide background, drawn from its domain's family, and its light.

The domain shift SBSGAN addresses lives here: synmarket is a sunny summer campus, synduke an overcast winter
campus, syncuhk an indoor corridor (see the package docstring). Every camera of a domain draws its own scene
from that family, so cameras differ too, while the people (people.py) come from one shared distribution.
"""

import numpy as np
from PIL import Image, ImageDraw

from bgshift_tf.data.synthetic.colours import jitter, rgb, sample_colour, to_float
from bgshift_tf.data.synthetic.vehicles import draw_car

# Per-domain light: channel gains, contrast around mid-grey, and how often a random vehicle passes.
# Kept mild on purpose: the domain shift should live mostly in the background, not in the people.
_DOMAIN_LIGHT = {
    "synmarket": {"gain": (1.05, 1.02, 0.96), "contrast": 1.05, "traffic": 0.05},
    "synduke": {"gain": (0.93, 0.96, 1.02), "contrast": 0.95, "traffic": 0.15},
    "syncuhk": {"gain": (1.00, 0.98, 0.92), "contrast": 0.90, "traffic": 0.0},
}


def make_camera(rng, domain, camera, height, width) -> dict:
    """A camera: its scene (PIL RGB [3W, H + H/4]) and its light, for images of `height` x `width` pixels.

    Returns {"camera", "scene_image", "gain", "gradient", "noise", "contrast", "traffic", "light", "offset"}:
    an image pixel becomes `pixel * light + offset` (light float32 [H, W, 3]), plus noise of std `noise`.
    """
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


def _scene_market(rng, h, w):
    """Sunny summer campus: facade (brick / cream / stone) with windows or a shop front, hedges, pale paving."""
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.5, 0.62))
    palette = [(0.72, 0.36, 0.26), (0.93, 0.84, 0.66), (0.95, 0.66, 0.40), (0.86, 0.86, 0.82), (0.80, 0.52, 0.48)]
    facade = jitter(rng, palette[rng.integers(len(palette))])
    d.rectangle([0, 0, w, horizon], fill=rgb(facade))
    unit = max(2, h // 40)
    if rng.random() < 0.5:  # brick courses
        mortar = rgb(facade * 0.8 + 0.15)
        for row, y in enumerate(range(0, horizon, 2 * unit)):
            d.line([(0, y), (w, y)], fill=mortar, width=1)
            for x in range((row % 2) * 3 * unit, w, 6 * unit):
                d.line([(x, y), (x, y + 2 * unit)], fill=mortar, width=1)
    glass = jitter(rng, (0.18, 0.28, 0.40), 0.05)
    if rng.random() < 0.5:  # shop front: sign band over a glass band
        sign_y = int(horizon * rng.uniform(0.35, 0.5))
        d.rectangle([0, sign_y, w, sign_y + 3 * unit], fill=rgb(sample_colour(rng, neutral_prob=0)))
        d.rectangle([0, sign_y + 3 * unit, w, horizon], fill=rgb(glass))
        for x in range(int(rng.integers(0, 8 * unit)), w, int(rng.integers(10, 16)) * unit):
            d.rectangle([x, sign_y + 3 * unit, x + unit, horizon], fill=rgb(facade * 0.7))
        top = sign_y
    else:
        top = horizon
    win_w, win_h = int(rng.integers(3, 6)) * unit, int(rng.integers(4, 7)) * unit
    gap_x, gap_y = win_w + int(rng.integers(2, 5)) * unit, win_h + int(rng.integers(2, 4)) * unit
    frame = rgb(np.clip(facade + 0.25, 0, 1))
    for y in range(unit * 2, top - win_h, gap_y):
        for x in range(int(rng.integers(0, gap_x)), w, gap_x):
            d.rectangle([x - 1, y - 1, x + win_w + 1, y + win_h + 1], fill=frame)
            d.rectangle([x, y, x + win_w, y + win_h], fill=rgb(glass))
            d.line([(x, y + win_h // 3), (x + win_w, y)], fill=rgb(glass + 0.2), width=1)
    if rng.random() < 0.65:  # hedge of round bushes along the horizon
        for x in range(-2 * unit, w + 4 * unit, 3 * unit):
            r = int(rng.integers(3, 6)) * unit
            green = jitter(rng, (0.22, 0.50, 0.20), 0.06)
            d.ellipse([x - r, horizon - r - int(rng.integers(0, 2 * unit)), x + r, horizon + unit], fill=rgb(green))
    paving = jitter(rng, rng.choice([(0.80, 0.78, 0.72), (0.85, 0.80, 0.70), (0.74, 0.74, 0.74)]), 0.03)
    d.rectangle([0, horizon, w, h], fill=rgb(paving))
    line = rgb(paving * 0.82)
    y, step = horizon, 2 * unit
    while y < h:
        d.line([(0, y), (w, y)], fill=line, width=1)
        y, step = y + step, step + unit
    vanish = w * rng.uniform(0.2, 0.8)
    for x in range(-w, 2 * w, 5 * unit):
        d.line([(vanish + (x - vanish) * 0.3, horizon), (x, h)], fill=line, width=1)
    scene = to_float(img)
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
        stone = jitter(rng, rng.choice([(0.55, 0.50, 0.43), (0.48, 0.47, 0.46), (0.60, 0.56, 0.48)]), 0.03)
        d.rectangle([0, 0, w, horizon], fill=rgb(stone))
        y = 0
        while y < horizon:
            bh = int(rng.integers(2, 4)) * unit
            x = -int(rng.integers(0, 4 * unit))
            while x < w:
                bw = int(rng.integers(3, 8)) * unit
                block = [x, y, x + bw - 1, y + bh - 1]
                d.rectangle(block, fill=rgb(jitter(rng, stone, 0.035)), outline=rgb(stone * 0.7))
                x += bw
            y += bh
        for x in range(int(rng.integers(0, 10 * unit)), w, int(rng.integers(14, 22)) * unit):  # pointed windows
            d.rectangle([x, 3 * unit, x + 3 * unit, horizon - 4 * unit], fill=rgb((0.15, 0.15, 0.18)))
            d.polygon([(x, 3 * unit), (x + 3 * unit, 3 * unit), (x + 1.5 * unit, unit)], fill=rgb((0.15, 0.15, 0.18)))
    else:  # pale overcast sky with bare trees
        sky = jitter(rng, (0.80, 0.83, 0.88), 0.02)
        d.rectangle([0, 0, w, horizon], fill=rgb(sky))
        bark = rgb((0.20, 0.17, 0.15))
        for x in range(int(rng.integers(0, 6 * unit)), w, int(rng.integers(7, 12)) * unit):
            _bare_tree(rng, d, x, horizon, horizon * rng.uniform(0.35, 0.5), rng.uniform(-0.1, 0.1), 1.5 * unit, bark)
    if rng.random() < 0.7:  # parked cars along the far kerb
        x = -int(rng.integers(0, 10 * unit))
        while x < w:
            car_w = int(rng.integers(10, 14)) * unit
            colour = sample_colour(rng, neutral_prob=0.6) * 0.8
            draw_car(ImageDraw.Draw(img), x, horizon + unit, car_w, colour, facing=1)
            x += car_w + int(rng.integers(1, 8)) * unit
    grass_band = horizon + int(rng.integers(1, 3)) * unit
    grass = jitter(rng, rng.choice([(0.42, 0.45, 0.30), (0.88, 0.90, 0.93), (0.50, 0.46, 0.34)]), 0.03)
    d.rectangle([0, horizon + 2, w, grass_band], fill=rgb(grass))
    asphalt = jitter(rng, (0.33, 0.33, 0.35), 0.03)
    d.rectangle([0, grass_band, w, h], fill=rgb(asphalt))
    stripe = rgb(rng.choice([(0.92, 0.92, 0.88), (0.90, 0.78, 0.25)]))
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
    return to_float(img)


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
    wall = jitter(rng, rng.choice([(0.74, 0.80, 0.72), (0.84, 0.78, 0.64), (0.78, 0.78, 0.84)]), 0.03)
    d.rectangle([0, 0, w, horizon], fill=rgb(wall))
    d.rectangle([0, 0, w, 2 * unit], fill=rgb(wall * 0.85))
    for x in range(int(rng.integers(0, 6 * unit)), w, int(rng.integers(9, 14)) * unit):  # ceiling lights
        d.rectangle([x, 0, x + 5 * unit, unit], fill=(250, 250, 240))
    pillar = rgb(wall * rng.uniform(0.75, 0.9))
    pitch = int(rng.integers(16, 24)) * unit
    for x in range(int(rng.integers(0, pitch)), w, pitch):
        d.rectangle([x, 0, x + 3 * unit, horizon], fill=pillar)
        door_x = x + int(rng.integers(5, 9)) * unit
        if rng.random() < 0.6:
            door = rgb(jitter(rng, (0.45, 0.30, 0.18), 0.05))
            d.rectangle([door_x, int(horizon * 0.3), door_x + 5 * unit, horizon], fill=door)
            knob_x, knob_y = door_x + 4 * unit, int(horizon * 0.65)
            d.ellipse([knob_x - 1, knob_y, knob_x + 1, knob_y + 2], fill=(200, 190, 120))
        else:
            board = rgb(jitter(rng, (0.55, 0.42, 0.30), 0.04))
            d.rectangle([door_x, int(horizon * 0.35), door_x + 6 * unit, int(horizon * 0.6)], fill=board)
            for _ in range(4):
                px, py = door_x + rng.integers(0, 5 * unit), int(horizon * rng.uniform(0.36, 0.55))
                d.rectangle([px, py, px + unit, py + unit], fill=rgb(sample_colour(rng, neutral_prob=0.3)))
    d.rectangle([0, horizon - unit, w, horizon], fill=rgb(wall * 0.6))  # skirting board
    tile_a = jitter(rng, rng.choice([(0.70, 0.68, 0.62), (0.62, 0.64, 0.66), (0.76, 0.70, 0.60)]), 0.03)
    tile_b = tile_a * rng.uniform(0.85, 0.93)
    floor = np.zeros((h - horizon, w, 3), np.float32)
    yy, xx = np.mgrid[0 : h - horizon, 0:w]
    size = 3 * unit
    depth = 1 + yy / max(1, h - horizon)
    checker = ((xx / (size * depth)).astype(int) + (np.log1p(yy / size) * 4).astype(int)) % 2
    floor[:] = np.where(checker[..., None] == 0, tile_a, tile_b)
    glare = np.exp(-(((xx - w * rng.uniform(0.2, 0.8)) / (0.4 * w)) ** 2)) * (1 - yy / (h - horizon))
    floor += 0.12 * glare[..., None]
    scene = to_float(img)
    scene[horizon:] = floor
    return scene
