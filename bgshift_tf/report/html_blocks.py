"""Building blocks of the HTML report (`report.html`): escaping, embedded images, numbers, figure cards, tables."""

import base64
import html
import io
import os
from collections.abc import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from bgshift_tf.data import images


def esc(value) -> str:
    """HTML-escapes any value's text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def image_bytes(image, base_dir: str) -> tuple[bytes, str] | str:
    """Encoded bytes and MIME type of an image, or a str saying why it is unavailable."""
    if hasattr(image, "savefig"):
        buffer = io.BytesIO()
        image.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return buffer.getvalue(), "image/png"
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(images.to_uint8_rgb(image)).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    if isinstance(image, (bytes, bytearray)):
        data, label = bytes(image), "image bytes"
    elif isinstance(image, (str, os.PathLike)):
        path = os.path.join(base_dir, os.fspath(image))
        if not os.path.isfile(path):
            return f"image file not found: {path}"
        with open(path, "rb") as f:
            data, label = f.read(), path
    else:
        return f"unsupported image value of type {type(image).__name__}"
    try:
        with Image.open(io.BytesIO(data)) as opened:
            kind = opened.format
            if kind in ("PNG", "JPEG", "GIF", "WEBP"):
                opened.verify()
                return data, f"image/{kind.lower()}"
            buffer = io.BytesIO()
            opened.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue(), "image/png"
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return f"{label} is not a readable image ({error})"


def img(image, alt: str, base_dir: str) -> str:
    encoded = image_bytes(image, base_dir)
    if isinstance(encoded, str):
        return note(encoded)
    data, mime = encoded
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}">'


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def fmt_number(value) -> str:
    """Compact number text: integers as is, floats with 4 significant digits, tiny/huge in e-notation."""
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if value != value:
        return "NaN"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:.2e}"


def cell(value, tag: str = "td") -> str:
    if value is None:
        return f'<{tag} class="num muted">—</{tag}>'
    if is_number(value):
        return f'<{tag} class="num">{esc(fmt_number(value))}</{tag}>'
    short = ' class="nw"' if len(str(value)) <= 32 else ""
    return f"<{tag}{short}>{esc(value)}</{tag}>"


def seconds_text(value) -> str:
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def missing(key: str) -> str:
    return note(f"Not available: the report data has no “{key}” entry (stage not run or skipped).")


def figure(entry, base_dir: str, wide: bool = False) -> str:
    if not isinstance(entry, Mapping) or "image" not in entry:
        return note("A figure entry without an image was skipped.")
    title, caption = entry.get("title", ""), entry.get("caption", "")
    parts = [f'<figure class="card{" wide" if wide else ""}">']
    if title:
        parts.append(f"<h3>{esc(title)}</h3>")
    parts.append(f'<div class="frame">{img(entry["image"], title or caption or "figure", base_dir)}</div>')
    if caption:
        parts.append(f"<figcaption>{esc(caption)}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)


def figures_grid(entries, base_dir: str, wide: bool = False) -> str:
    if isinstance(entries, Mapping):
        entries = [entries]
    cards = "".join(figure(e, base_dir, wide) for e in entries)
    return f'<div class="grid{" grid-wide" if wide else ""}">{cards}</div>'


def table(table: Mapping) -> str:
    columns, rows = list(table.get("columns", [])), list(table.get("rows", []))
    if not rows:
        return note(f"Table “{table.get('title', '')}” has no rows.")
    parts = ['<div class="card">']
    if table.get("title"):
        parts.append(f"<h3>{esc(table['title'])}</h3>")
    parts.append('<div class="scroll"><table><thead><tr>')
    for i, column in enumerate(columns):
        values = [row.get(column) if isinstance(row, Mapping) else (row[i] if i < len(row) else None)
                  for row in rows]
        numeric = all(is_number(v) or v is None for v in values)
        parts.append(f'<th{" class=num" if numeric else ""}>{esc(column)}</th>')
    parts.append("</tr></thead><tbody>")
    for row in rows:
        cells = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
        parts.append("<tr>" + "".join(cell(v) for v in cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if table.get("caption"):
        parts.append(f'<p class="caption">{esc(table["caption"])}</p>')
    parts.append("</div>")
    return "".join(parts)
