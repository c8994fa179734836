"""Headless Chromium checks of the HTML reports: every figure decodes in a real browser, and a
screenshot of the page is not blank. Chromium comes from Debian (``chromium``); `.ci/run`
installs it. Missing locally: the test is skipped with the reason; missing under CI: it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio"]

# Appended to the test's copy of the page only (the reports themselves carry no script): after
# the load event, the state of every <img> is written into the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images).map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "img-probe";
  out.textContent = JSON.stringify(imgs);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    """The Chromium binary; skips the test (fails it under CI) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    why = "headless Chromium not found (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the browser check (.ci/run installs it)")
    pytest.skip(why)


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def images_in_browser(page: Path, workdir: Path) -> list[dict]:
    """Each <img> of ``page`` as Chromium loaded it: ``{alt, complete, width, height}``."""
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    res = _run(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    m = re.search(r'<pre id="img-probe">(.*?)</pre>', res.stdout, re.S)
    assert m, f"Chromium printed no probe result (rc {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, out: Path, size: str = "1200,3000") -> Path:
    """A PNG screenshot of ``page`` at ``size`` (width,height)."""
    res = _run([f"--screenshot={out}", f"--window-size={size}", page.as_uri()])
    assert out.exists(), f"no screenshot (rc {res.returncode}): {res.stderr[-2000:]}"
    return out


def assert_not_blank(png: Path) -> None:
    """The screenshot holds a rendered page: many colours, not one flat background."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot {png} has {len(colours)} colours: blank page"
    # text, axes and bars: a good share of the page is not background
    background = (pixels == pixels[0, 0]).all(axis=2).mean()
    assert background < 0.97, f"screenshot {png} is {background:.1%} background"


def assert_renders_in_browser(page: Path, workdir: Path, min_images: int) -> list[dict]:
    """Every figure of ``page`` decodes in Chromium and a screenshot of it is not blank."""
    imgs = images_in_browser(page, workdir)
    assert len(imgs) == page.read_text().count("<img ") >= min_images
    broken = [i["alt"] for i in imgs if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"figures not rendered by the browser: {broken}"
    assert_not_blank(screenshot(page, workdir / f"{page.stem}.png"))
    return imgs
