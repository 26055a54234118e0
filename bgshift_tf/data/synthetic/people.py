"""People of the synthetic world: one appearance distribution shared by all domains, and walking figures.

`sample_identity` draws what stays fixed for a person (clothes, hair, build, bag, companion, vehicle);
`draw_person` draws that person in a fresh walking pose onto a blank canvas, together with a label map of the
body parts (HEAD .. BAG) from which render.py derives the exact mask and the parser's mistakes.
"""

import dataclasses

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from bgshift_tf.data.synthetic.colours import rgb, sample_colour
from bgshift_tf.data.synthetic.vehicles import sample_vehicle

# Labels of the person's parts in the label map drawn with the person (0 = not the person).
HEAD, TRUNK, ARM_A, ARM_B, LEG_A, LEG_B, BAG = 1, 2, 3, 4, 5, 6, 7

_HAIR = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.75, 0.60, 0.35), (0.6, 0.6, 0.6))  # black, brown, blond, grey


def sample_identity(rng, config, with_context=True) -> dict:
    """Appearance of one person (shared distribution for all domains) and its context cues.

    With `with_context`, a companion (another identity, drawn beside the person) and a vehicle each come with
    probability config["companion_prob"] / config["vehicle_prob"]; otherwise both are None.
    """
    skin_t = rng.random()
    identity = {
        "upper": sample_colour(rng),
        "upper2": sample_colour(rng),
        "pattern": rng.choice(["solid", "solid", "hstripes", "vstripes", "jacket", "logo"]),
        "sleeves": rng.choice(["long", "short"]),
        "lower": sample_colour(rng, neutral_prob=0.6),
        "lower_style": rng.choice(["trousers", "trousers", "shorts", "skirt"], p=[0.4, 0.3, 0.15, 0.15]),
        "skin": (1 - skin_t) * np.array([0.96, 0.80, 0.68]) + skin_t * np.array([0.38, 0.24, 0.16]),
        "hair": np.array(_HAIR[rng.choice(len(_HAIR), p=[0.5, 0.3, 0.1, 0.1])]),
        "long_hair": rng.random() < 0.3,
        "shoes": sample_colour(rng, neutral_prob=0.8) * 0.6,
        "build_w": rng.uniform(0.85, 1.18),
        "build_h": rng.uniform(0.93, 1.05),
        "bag": rng.choice(["none", "backpack", "handbag", "shoulder"], p=[0.45, 0.25, 0.15, 0.15]),
        "bag_colour": sample_colour(rng, neutral_prob=0.5),
        "companion": None,
        "vehicle": None,
    }
    if with_context and rng.random() < config["companion_prob"]:
        identity["companion"] = sample_identity(rng, config, with_context=False)
    if with_context and rng.random() < config["vehicle_prob"]:
        identity["vehicle"] = sample_vehicle(rng)
    return identity


class _Painter:
    """Draws shapes on an RGB image and, with a part label, on a label map of the same size."""

    def __init__(self, size):
        self.rgb = Image.new("RGB", size)
        self.label = Image.new("L", size)
        self._rgb = ImageDraw.Draw(self.rgb)
        self._label = ImageDraw.Draw(self.label)

    def ellipse(self, cx, cy, rx, ry, colour, label):
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        self._rgb.ellipse(box, fill=rgb(colour))
        self._label.ellipse(box, fill=label)

    def polygon(self, points, colour, label):
        self._rgb.polygon(points, fill=rgb(colour))
        self._label.polygon(points, fill=label)

    def limb(self, points, colours, width, label):
        """A thick polyline with round joints; colours[i] paints segment i (e.g. sleeve then skin)."""
        for (a, b), colour in zip(zip(points[:-1], points[1:]), colours):
            self._rgb.line([a, b], fill=rgb(colour), width=int(width))
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


@dataclasses.dataclass(frozen=True)
class _Figure:
    """One person in one pose: the identity, the pose drawn for this image and where the body lines fall (pixels)."""

    identity: dict
    view: str  # "front" | "back" | "side"
    facing: int  # -1 | 1: the way a side view walks (and the cap's peak points)
    phase: float  # walking phase in [-1, 1]: leg and arm swing
    height: float  # person height; cx, feet_y: horizontal centre and foot line
    cx: float
    feet_y: float
    side: bool
    top: float
    head_r: float
    shoulder_y: float
    hip_y: float
    knee_y: float
    waist: float
    torso_bottom: float
    sw: float  # half shoulder width
    hw: float  # half hip width
    arm_w: float
    leg_w: float
    shoe_h: float


def _pose(rng, identity, height, cx, feet_y) -> _Figure:
    """Draws a view, facing and walking phase and lays the body out from them and the identity's build."""
    view = rng.choice(["front", "back", "side"])
    facing = rng.choice([-1, 1])
    phase = rng.uniform(-1, 1)
    side = view == "side"
    top = feet_y - height
    head_r = 0.068 * height
    hip_y = top + 0.50 * height
    return _Figure(
        identity=identity,
        view=view,
        facing=facing,
        phase=phase,
        height=height,
        cx=cx,
        feet_y=feet_y,
        side=side,
        top=top,
        head_r=head_r,
        shoulder_y=top + 2 * head_r + 0.03 * height,
        hip_y=hip_y,
        knee_y=top + 0.73 * height,
        waist=hip_y - 0.02 * height,
        torso_bottom=hip_y + 0.04 * height,
        sw=(0.08 if side else 0.13) * height * identity["build_w"],
        hw=(0.07 if side else 0.105) * height * identity["build_w"],
        arm_w=0.06 * height * identity["build_w"],
        leg_w=0.085 * height * identity["build_w"],
        shoe_h=0.035 * height,
    )


def draw_person(rng, identity, size, height, cx, feet_y):
    """One walking person on a blank canvas, in a pose drawn from `rng`.

    Args:
        size: (width, height) of the canvas in pixels.
        height: person height in pixels; cx, feet_y: horizontal centre and foot line.
    Returns:
        rgb: PIL RGB image (shaded); labels: PIL "L" image of the HEAD..BAG part ids (0 = not the person).
    """
    p = _Painter(size)
    f = _pose(rng, identity, height, cx, feet_y)
    _draw_behind_body(p, f)
    _draw_leg(p, f, -1, LEG_A)
    _draw_leg(p, f, 1, LEG_B)
    if f.side:
        _draw_arm(p, f, -1, f.phase, ARM_A)  # far arm, behind the torso
    _draw_torso(p, f)
    _draw_worn_bag(p, rng, f)
    if f.side:
        hands = [_draw_arm(p, f, 1, -f.phase, ARM_B)]
    else:
        hands = [_draw_arm(p, f, -1, f.phase, ARM_A), _draw_arm(p, f, 1, -f.phase, ARM_B)]
    if identity["bag"] == "handbag":
        _draw_handbag(p, f, hands[int(rng.integers(len(hands)))])
    _draw_head(p, f)
    return _shaded(p.rgb, f), p.label


def _rect(x, y, w, h):
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _backpack_size(f):
    return (0.09 if f.side else 0.2) * f.height, 0.22 * f.height


def _draw_behind_body(p, f):
    """What the body hides in part: a backpack seen past it (front or side view), long hair down the back."""
    identity, height = f.identity, f.height
    if identity["bag"] == "backpack" and f.view != "back":
        pack_w, pack_h = _backpack_size(f)
        if f.side:  # sticks out behind the back
            x, w = f.cx - f.facing * (f.sw + 0.03 * height) - pack_w / 2, pack_w
        else:  # shows either side of the shoulders
            x, w = f.cx - f.sw - 0.015 * height, 2 * f.sw + 0.03 * height
        p.polygon(_rect(x, f.shoulder_y + 0.01 * height, w, pack_h), identity["bag_colour"], BAG)
    if identity["long_hair"] and f.view != "back":
        hair_h = f.shoulder_y - f.top + 0.05 * height - f.head_r
        p.polygon(_rect(f.cx - f.head_r * 1.05, f.top + f.head_r, 2.1 * f.head_r, hair_h), identity["hair"], HEAD)


def _leg_points(f, sign):
    """[hip, knee, foot] of the leg on side `sign` (-1 | 1): swinging in a side view, lifting seen head-on."""
    height = f.height
    hip_x = f.cx + (0 if f.side else sign * f.hw * 0.5)
    if f.side:
        angle = sign * f.phase * 0.45
        length = f.feet_y - f.shoe_h - f.hip_y
        knee = (hip_x + np.sin(angle) * length * 0.5 + f.facing * 0.02 * height, f.hip_y + np.cos(angle) * length * 0.5)
        foot = (hip_x + np.sin(angle) * length, f.hip_y + np.cos(angle) * length)
    else:
        lift = max(0.0, sign * f.phase) * 0.04 * height
        foot = (hip_x + sign * 0.015 * height, f.feet_y - f.shoe_h - lift)
        knee = ((hip_x + foot[0]) / 2, f.knee_y - lift / 2)
    return [(hip_x, f.hip_y), knee, foot]


def _draw_leg(p, f, sign, label):
    """One leg (trousers, shorts, or bare under a skirt) and its shoe."""
    identity = f.identity
    skin, lower = identity["skin"], identity["lower"]
    points = _leg_points(f, sign)
    if identity["lower_style"] == "trousers":
        colours = [lower, lower]
    elif identity["lower_style"] == "shorts":
        colours = [lower, skin]
    else:
        colours = [skin * 0.9, skin * 0.9]
    p.limb(points, colours, f.leg_w, label)
    foot = points[-1]
    toe = f.facing * 0.03 * f.height if f.side else 0
    shoe_w = f.leg_w * (0.8 if f.side else 0.6)
    p.ellipse(foot[0] + toe, foot[1] + f.shoe_h * 0.3, shoe_w, f.shoe_h, identity["shoes"], label)


def _arm_points(f, sign, swing):
    """[shoulder, elbow, hand] of the arm on side `sign` (-1 | 1) swung by `swing` (in [-1, 1])."""
    height, arm_w = f.height, f.arm_w
    shoulder = (f.cx + (0 if f.side else sign * (f.sw - arm_w / 2)), f.shoulder_y + arm_w / 2)
    length = 0.34 * height
    if f.side:
        angle = swing * 0.5 * f.facing
        hand = (shoulder[0] + np.sin(angle) * length, shoulder[1] + np.cos(angle) * length)
        elbow = ((shoulder[0] + hand[0]) / 2 - f.facing * 0.01 * height, (shoulder[1] + hand[1]) / 2)
    else:
        hand = (shoulder[0] + sign * 0.035 * height, shoulder[1] + length * (1 - 0.05 * abs(swing)))
        elbow = ((shoulder[0] + hand[0]) / 2 + sign * 0.01 * height, (shoulder[1] + hand[1]) / 2)
    return [shoulder, elbow, hand]


def _draw_arm(p, f, sign, swing, label):
    """One arm (long or short sleeve) and its hand; returns the hand's centre (x, y)."""
    identity = f.identity
    upper, skin = identity["upper"], identity["skin"]
    colours = [upper, upper] if identity["sleeves"] == "long" else [upper, skin]
    points = _arm_points(f, sign, swing)
    p.limb(points, colours, f.arm_w, label)
    hand = points[-1]
    p.ellipse(hand[0], hand[1], f.arm_w * 0.55, f.arm_w * 0.6, skin, label)
    return hand


def _draw_torso(p, f):
    """Skirt or trouser seat, shoulders, and the upper garment with its pattern."""
    identity, height, cx, sw, hw = f.identity, f.height, f.cx, f.sw, f.hw
    upper, lower, arm_w, shoulder_y = identity["upper"], identity["lower"], f.arm_w, f.shoulder_y
    torso = [(cx - sw, shoulder_y), (cx + sw, shoulder_y)] + [(cx + k * hw * 1.05, f.torso_bottom) for k in (1, -1)]
    if identity["lower_style"] == "skirt":
        skirt = [(cx - hw, f.waist), (cx + hw, f.waist), (cx + hw * 1.6, f.knee_y), (cx - hw * 1.6, f.knee_y)]
        p.polygon(skirt, lower, TRUNK)
    elif f.side or f.view != "front":  # seat of the trousers, seen below the jacket from behind or the side
        p.polygon(_rect(cx - hw, f.waist, 2 * hw, 0.08 * height), lower, TRUNK)
    p.ellipse(cx - sw + arm_w / 2, shoulder_y + arm_w / 2, arm_w / 2 + 1, arm_w / 2 + 1, upper, TRUNK)
    p.ellipse(cx + sw - arm_w / 2, shoulder_y + arm_w / 2, arm_w / 2 + 1, arm_w / 2 + 1, upper, TRUNK)
    # Stripes go all round; a jacket opening or a chest logo is only seen from the front.
    pattern = identity["pattern"] if f.view == "front" or identity["pattern"] in ("hstripes", "vstripes") else "solid"
    p.pattern(torso, upper, identity["upper2"], pattern, (cx - sw, shoulder_y, cx + sw, f.torso_bottom), TRUNK)


def _draw_worn_bag(p, rng, f):
    """A bag over the torso: a backpack seen from behind, its straps from the front, or a shoulder bag."""
    identity, height, cx, shoulder_y = f.identity, f.height, f.cx, f.shoulder_y
    bag, bag_colour = identity["bag"], identity["bag_colour"]
    if bag == "backpack" and f.view == "back":
        pack_w, pack_h = _backpack_size(f)
        p.polygon(_rect(cx - pack_w / 2, shoulder_y + 0.02 * height, pack_w, pack_h), bag_colour, BAG)
    if bag == "backpack" and f.view == "front":
        for sign in (-1, 1):
            x = cx + sign * f.sw * 0.55
            strap = [(x, shoulder_y), (x + sign * 0.01 * height, shoulder_y + 0.16 * height)]
            p.limb(strap, [bag_colour * 0.8], max(2, 0.02 * height), BAG)
    if bag == "shoulder":
        strap_side = f.facing if f.side else rng.choice([-1, 1])
        bag_x = cx - strap_side * (f.hw + 0.02 * height)
        strap = [(cx + strap_side * f.sw * 0.6, shoulder_y), (bag_x, f.waist)]
        p.limb(strap, [bag_colour * 0.7], max(2, 0.018 * height), BAG)
        p.polygon(_rect(bag_x - 0.06 * height, f.hip_y - 0.04 * height, 0.12 * height, 0.1 * height), bag_colour, BAG)


def _draw_handbag(p, f, hand):
    """A handbag hanging from `hand` (x, y)."""
    hx, hy = hand
    height, bag_colour = f.height, f.identity["bag_colour"]
    handle = [(hx - 0.02 * height, hy + 0.03 * height), (hx, hy), (hx + 0.02 * height, hy + 0.03 * height)]
    p.limb(handle, [bag_colour * 0.7] * 2, max(2, 0.012 * height), BAG)
    p.polygon(_rect(hx - 0.055 * height, hy + 0.03 * height, 0.11 * height, 0.09 * height), bag_colour, BAG)


def _draw_head(p, f):
    """The face and the hair: a full head of hair from behind (and long hair down the back), a cap of it otherwise."""
    identity, height, head_r = f.identity, f.height, f.head_r
    head_cx, head_cy = f.cx + (f.facing * 0.01 * height if f.side else 0), f.top + head_r
    p.ellipse(head_cx, head_cy, head_r * 0.88, head_r, identity["skin"], HEAD)
    if f.view == "back":
        p.ellipse(head_cx, head_cy, head_r * 0.9, head_r * 1.02, identity["hair"], HEAD)
        if identity["long_hair"]:
            hair_h = f.shoulder_y - head_cy + 0.07 * height
            p.polygon(_rect(f.cx - head_r * 0.9, head_cy, 1.8 * head_r, hair_h), identity["hair"], HEAD)
    else:
        cap_dx = -f.facing * 0.25 * head_r if f.side else 0
        p.ellipse(head_cx + cap_dx, head_cy - 0.55 * head_r, head_r * 0.9, head_r * 0.5, identity["hair"], HEAD)


def _shaded(image, f):
    """`image` (PIL RGB) darkened away from the body's centre line: soft cylinder shading, so bodies read as round."""
    xx = np.arange(image.width, dtype=np.float32)
    shade = np.clip(1 - 0.3 * ((xx - f.cx) / (f.sw * 1.6)) ** 2, 0.7, 1)
    shade = Image.fromarray(np.repeat((255 * shade + 0.5).astype(np.uint8)[None, :, None], 3, axis=2))
    return ImageChops.multiply(image, shade.resize(image.size, Image.NEAREST))
