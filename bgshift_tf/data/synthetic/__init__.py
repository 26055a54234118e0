"""The built-in synthetic multi-domain person re-ID world (SPEC §1, "The synthetic re-ID world").

No real re-ID dataset can be downloaded here, so this package draws a small cartoon world that has the
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

Modules (this package is the public API; the rest is internal):
    world.py          presets and their checks, the on-disk layout, make_world (plan, render, write)
    scenes.py         each camera's background, drawn from its domain's family, and its light
    people.py         identities (shared appearance distribution) and walking figures with part labels
    vehicles.py       cars and bikes (scene props and ID-related context)
    render.py         one image: scene crop, context, shadow, person, light; exact and parser masks
    contact_sheet.py  the contact_sheet.png of a world
    colours.py        clothing colours and float <-> PIL colour conversions
"""

from bgshift_tf.data.synthetic.world import (
    DOMAINS,
    EXACT_MASK_FOLDER,
    MASK_FOLDER,
    PRESETS,
    domain_paths,
    load_world,
    make_world,
    resolve_config,
)

__all__ = [
    "DOMAINS",
    "EXACT_MASK_FOLDER",
    "MASK_FOLDER",
    "PRESETS",
    "domain_paths",
    "load_world",
    "make_world",
    "resolve_config",
]
