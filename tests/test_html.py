"""Tests for bgshift_tf.report.html: self-contained page, escaping, missing sections, paper numbers."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.evaluation import domain_distance
from bgshift_tf.report import figures, grids, html, html_blocks, html_sections, paper_results, tsne

DOMAINS = {"synmarket": (70, 110, 160), "synduke": (150, 140, 100), "syncuhk": (90, 150, 90)}


def _person(background, seed, height=64, width=32):
    """A toy person crop: float [-1, 1] image and its {0, 1} mask."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = np.asarray(background) / 127.5 - 1.0
    image += rng.normal(0, 0.08, image.shape).astype(np.float32)
    mask = np.zeros((height, width, 1), np.float32)
    mask[8:30, 9:23] = 1.0
    mask[30:58, 10:22] = 1.0
    mask[3:9, 12:20] = 1.0
    image = np.where(mask > 0, np.tile(rng.uniform(-0.9, 0.9, 3), (height, width, 1)), image)
    image[30:58, 10:22] = rng.uniform(-0.9, 0.6, 3)
    return np.clip(image, -1, 1), mask


def sample_report_data(tmp_path):
    """Report data with every section filled, as the pipeline would produce (arrays + one file path)."""
    samples, sheets = [], {}
    for d, (name, colour) in enumerate(DOMAINS.items()):
        people = [_person(colour, seed=10 * d + i) for i in range(8)]
        sheets[name] = [p[0] for p in people]
        image, mask = people[0]
        hard = (image + 1) * mask - 1
        soft = np.clip(hard * 0.9 + 0.05 * (1 - mask) * image, -1, 1)
        sample = {"label": name, "original": image, "parser_mask": mask, "hard_mask": hard, "soft_mask": soft}
        for other, other_colour in DOMAINS.items():
            sample[f"style_to_{other}"] = np.where(mask > 0, image, np.asarray(other_colour) / 127.5 - 1)
        sample["reconstruction"] = image
        samples.append(sample)
    variants = ["original", "parser_mask", "hard_mask", "soft_mask"] + [f"style_to_{d}" for d in DOMAINS]
    grid = grids.variant_grid(samples, variants + ["reconstruction"], scale=2)
    sheet_path = figures.save_png(grids.image_grid([images[:10] for images in sheets.values()], row_labels=list(sheets), scale=1.5), tmp_path / "figures" / "sheet.png")
    steps = np.arange(0, 200, 5)
    curves = {"losses/d_adv": (steps, -5 * np.exp(-steps / 80) + np.sin(steps / 7) * 0.3),
              "losses/g_rec": (steps, np.exp(-steps / 60) + 0.1), "losses/g_sc": (steps, 0.5 / (1 + steps / 30))}
    ranked = grids.ranked_lists(
        [{"query": sheets["synduke"][q], "gallery": sheets["synduke"][:10] + sheets["syncuhk"][:0],
          "correct": [i % 3 == q for i in range(8)], "label": f"q {q:04d} c{q + 1}"} for q in range(3)],
        top_k=8, cell_size=(96, 48),
    )
    rng = np.random.default_rng(0)
    features = {v: {"synmarket": rng.normal(0, 1, (25, 6)), "synduke": rng.normal(gap, 1, (25, 6))}
                for v, gap in [("original", 3.0), ("hard_mask", 0.6), ("soft_mask", 0.8)]}
    distance = domain_distance.domain_distance(features, seed=0, max_iter=250)
    return {
        "run_name": "demo <synthetic>",
        "created": "2026-11-24 10:00 UTC",
        "summary": "SBSGAN + DA-2S on the built-in three-domain synthetic world.",
        "flags": {"image_size": [128, 64], "gan_steps": 2000, "reid_backbone": "densenet_small",
                  "note": "<b>not bold</b>"},
        "timings": {"make_synthetic": 12.3, "build_tfrecords": 8.1, "train_gan": 1534.0, "train_reid": 2750.5,
                    "evaluate": 45.2, "export": 96.0},
        "contact_sheets": [{"title": "Sample images per domain", "image": "figures/sheet.png",
                            "caption": "Eight training images of each synthetic domain."}],
        "suppression_grids": [{"title": "Original, masks, soft-mask and style transfer", "image": grid,
                               "caption": "Columns: one training image per domain. Rows: image variants."}],
        "loss_curves": [{"title": "SBSGAN losses", "image": figures.plot_loss_curves(curves),
                         "caption": "Raw (faint) and smoothed losses per training step."}],
        "domain_distance": {"summary": domain_distance.to_json(distance), "figures": [
            {"title": "t-SNE per image variant", "image": tsne.plot_domain_distance(distance),
             "caption": "Each point is one image; C- marks a domain centre."}]},
        "suppression_quality": {
            "title": "Suppression quality vs exact masks", "columns": ["Variant", "BG energy", "FG L1"],
            "rows": [["hard_mask", 0.0, 0.112], ["soft_mask", 0.0213, 0.0841]],
            "caption": "Background energy: mean |pixel + 1| outside the exact mask.",
        },
        "reid": {
            "table2": {"setting": "synmarket → synduke", "convention": "torchreid mAP", "rows": [
                {"name": "Original", "paper_key": "original", "mAP": 0.212, "R-1": 0.35, "R-5": 0.52, "R-10": 0.61,
                 "bootstrap_ci": {"mAP": [0.171, 0.254], "R-1": [0.301, 0.399]}},
                {"name": "Hard-mask (parser masks)", "paper_key": "hard_mask_jppnet",
                 "mAP": 0.25, "R-1": 0.4, "R-5": 0.57, "R-10": 0.66,
                 "bootstrap_ci": {"mAP": [0.21, 0.29], "R-1": [0.35, 0.45]}},
                {"name": "Soft-mask", "paper_key": "soft_mask", "mAP": 0.28, "R-1": 0.45, "R-5": 0.6, "R-10": 0.7,
                 "bootstrap_ci": {"mAP": [0.24, 0.32], "R-1": [0.4, 0.5]}},
                {"name": "Hard-mask (exact masks)", "mAP": 0.3, "R-1": 0.47, "R-5": 0.61, "R-10": 0.72},
            ]},
            "table3": {"setting": "synmarket → synduke",
                       "rows": [{"name": "DA-2S", "paper_key": "da2s", "mAP": 0.33, "R-1": 0.51}]},
        },
        "ranked_lists": [{"title": "synmarket → synduke, DA-2S", "image": ranked,
                          "caption": "Top-8 gallery images per query."}],
        "exports": [{"name": "generator", "path": "saved_models/generator/1", "formats": ["saved_model", "tflite"],
                     "signatures": {"serving_default": {"inputs": {"images": "uint8 [-1, 128, 64, 3]"},
                                                        "outputs": {"soft_mask": "float32 [-1, 128, 64, 3]"}}},
                     "parity": {"tflite": 2.1e-5, "onnx": 3e-3}, "tolerance": 1e-4}],
    }


def _data_uris(page):
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.fixture(scope="module")
def report_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return folder, sample_report_data(folder)


def test_report_is_self_contained_and_images_decode(report_data, tmp_path):
    folder, data = report_data
    path = html.write_report(folder / "report.html", data)
    page = open(path, encoding="utf-8").read()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    uris = _data_uris(page)
    assert len(uris) == 5  # contact sheet (file), grid, loss curves and t-SNE (Figures), ranked list
    for uri in uris:
        header, payload = uri.split(",", 1)
        assert header in ("data:image/png;base64", "data:image/jpeg;base64")
        Image.open(io.BytesIO(base64.b64decode(payload))).load()
    # The file-path image was embedded byte for byte.
    sheet = (folder / "figures" / "sheet.png").read_bytes()
    assert any(base64.b64decode(u.split(",", 1)[1]) == sheet for u in uris)


def test_text_is_escaped(report_data):
    folder, data = report_data
    page = html.render_report(data, base_dir=str(folder))
    assert "demo &lt;synthetic&gt;" in page and "demo <synthetic>" not in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    page = html.render_report({"run_name": "x", "notes": ['"quoted" & <i>']})
    assert "&quot;quoted&quot; &amp; &lt;i&gt;" in page


def test_missing_sections_are_omitted_with_a_note(tmp_path):
    page = html.render_report({"run_name": "bare", "loss_curves": [{"image": "nowhere.png", "title": "t"}]},
                              base_dir=str(tmp_path))
    for key in ("contact_sheets", "suppression_grids", "domain_distance", "ranked_lists", "exports", "timings"):
        assert f"no “{key}” entry" in page
    assert "image file not found" in page and "nowhere.png" in page
    assert "<img" not in page
    assert 'class=absent><a href="#domains"' in page
    # Paper numbers still appear, and our side says it has no rows.
    assert "no “reid.table2” rows" not in page  # the whole re-ID section is missing ...
    assert "no “reid” entry" in page


def test_paper_numbers_appear_labelled_beside_ours(report_data):
    folder, data = report_data
    page = html.render_report(data, base_dir=str(folder))
    assert html_sections.PAPER_LABEL in page and html_sections.OURS_LABEL in page
    for row in paper_results.TABLE2["rows"] + paper_results.TABLE3["rows"]:
        assert html_blocks.esc(row["name"]) in page
    # Paper "Soft-mask" row: paper 22.3 / 43.3 then ours 28.0 / 45.0 on the same table row.
    soft = re.search(r"<tr><td class=\"left\">Soft-mask</td>(.*?)</tr>", page).group(1)
    numbers = re.findall(r">(?:<strong>)?([\d.]+)(?:</strong>)?(?:<span class=\"ci\">\[[\d., ]+\]</span>)?</td>", soft)
    assert numbers == ["22.3", "43.3", "58.2", "64.4", "28.0", "45.0", "60.0", "70.0"]
    # Rows without a paper counterpart are listed as ours only; paper rows without ours show a dash.
    assert "Ours only (no paper counterpart)" in page and "Hard-mask (exact masks)" in page
    ptgan = re.search(r"<tr><td class=\"left\">PTGAN</td>(.*?)</tr>", page).group(1)
    assert ptgan.count("—") == 4
    # Fig. 6 text values appear next to ours in the domain-distance table.
    distance = re.search(r'<section id="domain-distance">(.*?)</section>', page).group(1)
    row = re.search(r"<tr><td class=\"nw\">hard_mask</td>(.*?)</tr>", distance).group(1)
    assert row.endswith('<td class="num">10.19</td>')


def test_bad_metrics_and_data_raise_clear_errors(tmp_path):
    data = {"run_name": "x", "reid": {"table2": {"rows": [{"name": "a", "paper_key": "original", "mAP": 21.2}]}}}
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\].*21.2"):
        html.render_report(data)
    with pytest.raises(ValueError, match="run_name"):
        html.render_report({"flags": {}})


def test_write_report_is_atomic_and_overwrites(tmp_path):
    out = tmp_path / "run" / "report.html"
    html.write_report(out, {"run_name": "first"})
    html.write_report(out, {"run_name": "second"})
    assert "second" in out.read_text() and "first" not in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_number_formatting():
    assert html_blocks.fmt_number(1234) == "1,234"
    assert html_blocks.fmt_number(0.08412) == "0.08412"
    assert html_blocks.fmt_number(2.1e-5) == "2.10e-05"
    assert html_blocks.fmt_number(1534.0) == "1,534.0"


def test_timings_table_totals_and_status_column():
    page = html.render_report({"run_name": "t", "timings": {"a": 30.0, "b": 90.0}})
    assert '<td class="num">2 min 00 s</td>' in page  # the total
    assert 'style="width:100.0%"' in page and 'style="width:33.3%"' in page
    assert "<th>Status</th>" not in page
    page = html.render_report({"run_name": "t", "timings": [{"stage": "a", "seconds": 5, "status": "resumed"}]})
    assert "<th>Status</th>" in page and ">resumed</td>" in page
