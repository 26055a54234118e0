"""The synthetic world's contact sheet: per domain, sample images beside their parser masks and mask errors.

make_world saves it as <out_dir>/contact_sheet.png, the first thing to look at in a new world.
"""

import numpy as np
from PIL import Image, ImageDraw


def contact_sheet(samples, config, tiles_per_row=6):
    """A PNG-ready image: per domain, tiles of [image | parser mask | parser vs exact].

    `samples` is {domain: {camera: [(image, parser, exact, caption)]}} (world._make_domain's samples);
    two rows of tiles per domain, round-robin over cameras. In the third panel white = both masks,
    red = body the parser missed, cyan = parser false positive.
    """
    height, width = config["image_height"], config["image_width"]
    tile_w, gap, header = 3 * width + 6, 6, 14
    rows = [(name, _choose(per_camera, 2 * tiles_per_row)) for name, per_camera in samples.items()]
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
            sheet.paste(Image.fromarray(image), (x, y))
            sheet.paste(Image.fromarray(np.repeat(parser[..., None] * np.uint8(255), 3, axis=2)), (x + width + 3, y))
            sheet.paste(Image.fromarray(_mask_errors(parser, exact)), (x + 2 * width + 6, y))
            draw.text((x, y + height + 1), caption, fill=(220, 220, 220))
    return sheet


def _choose(per_camera, count):
    """Up to `count` samples of one domain, round-robin over its cameras.

    Each pick prefers an identity not shown yet, so the rows show many people.
    """
    pending = [list(v) for _, v in sorted(per_camera.items())]
    chosen, seen = [], set()
    while len(chosen) < count and any(pending):
        for queue in pending:
            if queue and len(chosen) < count:
                pick = queue.pop(next((i for i, sample in enumerate(queue) if sample[3].split()[0] not in seen), 0))
                seen.add(pick[3].split()[0])
                chosen.append(pick)
    return chosen


def _mask_errors(parser, exact):
    """The mask-error panel, uint8 [H, W, 3], of two {0,1} [H, W] masks.

    White where both are body, red where the parser missed body, cyan where it took background for body.
    """
    errors = np.zeros(parser.shape + (3,), np.uint8)
    errors[(parser == 1) & (exact == 1)] = 255
    errors[(parser == 0) & (exact == 1)] = (230, 40, 40)
    errors[(parser == 1) & (exact == 0)] = (40, 220, 230)
    return errors
