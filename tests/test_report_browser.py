"""Open the generated index.html in real headless Chromium.

The report is built from an in-memory run table (no MLflow store needed;
histories are stubbed), then Chromium loads a copy of the page with a probe
script appended that writes what it sees into a DOM attribute, and
``--dump-dom`` returns the DOM after scripts ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report import analysis, figures, render
from harness.report.load import LoadedRuns

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and Path("/usr/bin/chromium").exists():
    CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")

PROBE = """<script>
window.addEventListener('load', function () {
  var t = document.getElementById('leaderboard');
  var imgs = Array.prototype.slice.call(document.images);
  var cd = document.getElementById('fig-cd');
  var r = cd ? cd.getBoundingClientRect() : null;
  document.body.setAttribute('data-probe', JSON.stringify({
    table_h: t ? t.offsetHeight : -1, table_rows: t ? t.rows.length : -1,
    cd_w: cd ? cd.naturalWidth : -1, cd_h: cd ? cd.offsetHeight : -1,
    cd_visible: cd ? (r.width > 0 && r.height > 0 &&
                      getComputedStyle(cd).visibility === 'visible') : false,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
    images: imgs.length}));
});
</script>"""


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in ("iris", "wine", "digits", "adult"):
        for j, m in enumerate(("baseline", "focal", "anyloss", "ldr")):
            for s in range(3):
                failed = (d, m) == ("adult", "ldr")
                rows.append({
                    "run_id": f"{d}-{m}-{s}", "start_time": 0, "mlflow_status": "FINISHED",
                    "suite": "web", "run_key": f"{d}-{m}-{s}", "dataset": d, "method": m,
                    "seed": str(s), "task": "classification",
                    "status": "failed" if failed else "finished",
                    "error": "RuntimeError: <b>boom</b> & co" if failed else None,
                    "test/accuracy": np.nan if failed else 0.7 + 0.05 * j + rng.normal(0, .01),
                    "time/train_s": 1.0 + j})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("web")
    runs = _runs()
    hist = {rid: [(e, 0.5 + 0.04 * e) for e in range(5)] for rid in runs.run_id}
    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "load_histories", lambda ids, key, uri: {i: hist[i] for i in ids})
    uri = f"sqlite:///{out / 'x.db'}"  # the run-images figure asks this store (empty)
    try:
        data = analysis.analyse(LoadedRuns("web", runs, len(runs)), title="web",
                                metric="accuracy", tracking_uri=uri, baseline="baseline")
        figs = figures.make_figures(data, out, uri)
    finally:
        mp.undo()
    render.write(data, figs, out, ["html"])
    return out / "index.html"


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_page_is_self_contained(page):
    html = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; co" in html  # run errors are escaped


def test_leaderboard_and_cd_diagram_render_in_chromium(page, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    res = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(),
                    profile=tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert m, f"probe did not run; stderr: {res.stderr[-2000:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"'))
    assert seen["table_h"] > 0 and seen["table_rows"] == 1 + 4  # header + 4 methods
    assert seen["cd_w"] > 0 and seen["cd_h"] > 0 and seen["cd_visible"]
    assert seen["images"] == 5 and seen["broken"] == 0


def test_screenshot(page, tmp_path):
    shot = tmp_path / "shot.png"
    res = _chromium("--window-size=1280,2400", "--hide-scrollbars",
                    f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # not a blank page
