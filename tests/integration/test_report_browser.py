"""The report pages, rendered from hand-made report dicts, load in headless Chromium: every
figure decodes and the screenshot is not blank (skipped without Chromium, failed under CI)."""

from __future__ import annotations

import pytest

from recpipe.reports import store
from tests.browser import assert_renders_in_browser
from tests.unit.test_reports import evaluation_report, ingest_report, simulation_report, train_report

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["evaluation", "train", "ingest", "simulation"])
def test_pages_render_in_a_headless_browser(kind, tmp_path):
    report = {
        "evaluation": evaluation_report,
        "train": train_report,
        "ingest": ingest_report,
        "simulation": simulation_report,
    }[kind]()
    page = tmp_path / f"{kind}.html"
    page.write_text(store.renderer(kind)(report))
    imgs = assert_renders_in_browser(page, tmp_path / "browser", min_images=3)
    assert all(i["width"] > 200 for i in imgs)
