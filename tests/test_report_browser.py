"""Opens the HTML report in headless Chromium (Debian package `chromium`; skipped when absent).

Two Chromium runs on a report with every section filled (the seeded tables' inline SVG dot plots included):
1. the report as written: a screenshot PNG is produced, and Chromium logs no console message at all
   (the page has no scripts, so any console line means a blocked or failed resource);
2. a copy with a check script injected at the top of <head> (never in the product) and one deliberately
   broken control image appended: on `load` the script records every <img>'s decode state
   (`complete && naturalWidth > 0`) and every error event into a body attribute, read back with
   `--dump-dom`. Exactly the control image must be reported broken, which shows the check can fail.
"""

import html as html_lib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from bgshift_tf.report import html
from test_html import sample_report_data
from test_report_experiments import sample_experiments

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
    ),
]

_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
]

_CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target;
    errors.push(t && t.tagName ? t.tagName + ' ' + (t.getAttribute('alt') || '') : String(e.message));
  }, true);
  window.addEventListener('load', function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (im) { return !(im.complete && im.naturalWidth > 0); })
                       .map(function (im) { return im.getAttribute('alt'); });
    document.body.setAttribute('data-check', JSON.stringify(
        {images: images.length, broken: broken, errors: errors}));
  });
})();
</script>"""

_CONTROL_IMAGE = '<img alt="__control__" src="data:image/png;base64,AAAA">'


def _chromium(tmp_path, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done, console


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    data = {**sample_report_data(folder / "run"), "experiments": sample_experiments()}  # inline SVG plots too
    path = html.write_report(folder / "run" / "report.html", data)
    return folder, path


def test_screenshot_and_no_console_messages(report):
    folder, path = report
    shot = folder / "screenshot.png"
    done, console = _chromium(folder, f"--screenshot={shot}", "--window-size=1280,2000", f"file://{path}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console == []
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape == (2000, 1280, 3)
    assert picture.std() > 20  # the page rendered, not a blank canvas
    # The header band is drawn in its dark-blue gradient (CSS applied).
    r, g, b = picture[20, 20].astype(int)
    assert b > 100 and b > r + 40


def test_every_image_decodes_and_no_errors(report):
    folder, path = report
    page = open(path, encoding="utf-8").read()
    expected = len(re.findall(r"<img ", page))
    probe = folder / "run" / "probe.html"
    probe.write_text(
        page.replace("<head>", "<head>" + _CHECK_SCRIPT, 1).replace("</main>", _CONTROL_IMAGE + "</main>", 1),
        encoding="utf-8",
    )
    done, console = _chromium(folder, "--virtual-time-budget=5000", "--dump-dom", f"file://{probe}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console == []
    found = re.search(r'data-check="([^"]*)"', done.stdout)
    assert found, "the check script did not run: " + done.stdout[:500]
    check = json.loads(html_lib.unescape(found.group(1)))
    assert check["images"] == expected + 1
    assert check["broken"] == ["__control__"]
    assert check["errors"] == ["IMG __control__"]
