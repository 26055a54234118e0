"""Vehicles of the synthetic world: cars parked in Duke scenes, and a person's car or bike passing by.

A person's own vehicle is ID-related context (paper §4): it comes back in many of that person's images.
"""

from bgshift_tf.data.synthetic.colours import rgb, sample_colour


def sample_vehicle(rng) -> dict:
    """{"kind": "car" | "bike", "colour": RGB floats, "side": -1 | 1 (left or right of the person)}."""
    kind = rng.choice(["car", "bike"])
    return {"kind": kind, "colour": sample_colour(rng, neutral_prob=0.4), "side": rng.choice([-1, 1])}


def draw_car(d, x, bottom, length, colour, facing):
    """A side-on car whose body spans [x, x + length] and whose wheels touch `bottom` (d: PIL ImageDraw)."""
    h = 0.38 * length
    body_top = bottom - 0.55 * h
    d.rounded_rectangle([x, body_top, x + length, bottom - 0.12 * h], radius=max(1, int(0.1 * h)), fill=rgb(colour))
    roof = bottom - h
    cab = [(x + a * length, y) for a, y in ((0.2, body_top), (0.3, roof), (0.72, roof), (0.85, body_top))]
    if facing < 0:
        cab = [(2 * x + length - px, py) for px, py in cab]
    d.polygon(cab, fill=rgb(colour * 0.9))
    inner = [(px * 0.9 + sum(q[0] for q in cab) / 40, py + 0.08 * h) for px, py in cab]
    d.polygon(inner, fill=rgb((0.2, 0.25, 0.3)))
    r = 0.16 * h
    for wx in (x + 0.2 * length, x + 0.8 * length):
        d.ellipse([wx - r, bottom - 2 * r, wx + r, bottom], fill=(25, 25, 25))
        d.ellipse([wx - r / 2, bottom - 1.5 * r, wx + r / 2, bottom - 0.5 * r], fill=(150, 150, 150))


def draw_bike(d, cx, bottom, size, colour):
    """A side-on bike centred on `cx`, wheels touching `bottom`, `size` pixels long (d: PIL ImageDraw)."""
    r = 0.22 * size
    width = max(1, int(size / 30))
    for wx in (cx - 0.32 * size, cx + 0.32 * size):
        d.ellipse([wx - r, bottom - 2 * r, wx + r, bottom], outline=(30, 30, 30), width=max(1, width))
    hub_y = bottom - r
    seat, bar = (cx - 0.08 * size, hub_y - 0.35 * size), (cx + 0.22 * size, hub_y - 0.4 * size)
    frame = [(cx - 0.32 * size, hub_y), seat, (cx, hub_y), bar, (cx + 0.32 * size, hub_y)]
    d.line(frame, fill=rgb(colour), width=max(1, 2 * width))
    d.line([(cx - 0.32 * size, hub_y), (cx, hub_y)], fill=rgb(colour), width=max(1, 2 * width))
