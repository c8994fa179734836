"""Report files in ``cfg.artifacts_dir("reports")`` (a local folder or an object-store URI)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("evaluation", "train", "ingest", "simulation")


def _fs(folder: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, base path, base as shown to the user) of a folder or URI."""
    from recpipe.lake.fs import filesystem, is_uri

    fs, base = filesystem(folder)
    if is_uri(folder):
        return fs, base.rstrip("/"), folder.rstrip("/")
    return fs, base, base


def safe_name(text: str) -> str:
    """``text`` usable in a file name (batch and run ids may hold other characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def write_bytes(folder: str, name: str, data: bytes) -> str:
    """Write ``data`` to ``folder/name``; returns the path as shown to the user."""
    fs, base, shown = _fs(folder)
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(f"{base}/{name}") as fh:
        fh.write(data)
    return f"{shown}/{name}"


def write_report(folder: str, name: str, report: dict[str, Any]) -> str:
    """Write ``report`` as JSON to ``folder/name`` (local path or object-store URI); its path."""
    return write_bytes(folder, name, json.dumps(report, indent=2, default=str).encode())


def read_report(folder: str, name: str) -> dict[str, Any]:
    fs, base, _ = _fs(folder)
    with fs.open_input_stream(f"{base}/{name}") as fh:
        report: dict[str, Any] = json.loads(fh.read().decode())
    return report


def kind_of(name: str) -> str | None:
    """``evaluation`` / ``train`` / ``ingest`` / ``simulation`` for a report file name, else None."""
    head = name.split("-", 1)[0]
    return head if head in KINDS and "-" in name else None


def list_reports(folder: str) -> list[dict[str, Any]]:
    """The JSON reports in ``folder`` (newest name last), each with its HTML page if written."""
    import pyarrow.fs as pafs

    fs, base, shown = _fs(folder)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    names = {
        Path(i.path).name
        for i in fs.get_file_info(pafs.FileSelector(base, recursive=False))
        if i.type == pafs.FileType.File
    }
    out = []
    for name in sorted(names):
        if not name.endswith(".json") or kind_of(name) is None:
            continue
        html = name[: -len(".json")] + ".html"
        out.append(
            {
                "kind": kind_of(name),
                "name": name[: -len(".json")],
                "json": f"{shown}/{name}",
                "html": f"{shown}/{html}" if html in names else None,
            }
        )
    return out


def renderer(kind: str) -> Callable[[dict[str, Any]], str]:
    from recpipe.reports import html

    return {
        "evaluation": html.evaluation_page,
        "train": html.train_page,
        "ingest": html.ingest_page,
        "simulation": html.simulation_page,
    }[kind]


def publish(folder: str, stem: str, kind: str, report: dict[str, Any]) -> str | None:
    """Render ``report`` to ``folder/<stem>.html``; its path, or None after one warning line.

    A report is a by-product: a rendering or writing error never fails the stage.
    """
    try:
        path = write_bytes(folder, f"{stem}.html", renderer(kind)(report).encode())
    except Exception as exc:  # noqa: BLE001 - any error of a by-product is logged, not raised
        log.warning("%s report: HTML page not written (%s: %s)", kind, type(exc).__name__, exc)
        return None
    log.info("%s report: %s", kind, path)
    return path


def write_json_and_html(folder: str, stem: str, kind: str, report: dict[str, Any]) -> str | None:
    """``folder/<stem>.json`` and its page; the page's path or None (never raises)."""
    try:
        write_report(folder, f"{stem}.json", report)
    except Exception as exc:  # noqa: BLE001 - see publish
        log.warning("%s report: %s/%s.json not written (%s: %s)", kind, folder, stem, type(exc).__name__, exc)
        return None
    return publish(folder, stem, kind, report)


def report_date(entry: dict[str, Any], data: dict[str, Any] | None = None) -> str | None:
    """The run date a report belongs to: its JSON's ``run_date`` / ``day``, else a date in its name."""
    if data:
        for key in ("run_date", "day"):
            if data.get(key):
                return str(data[key])
    m = re.search(r"\d{4}-\d{2}-\d{2}", entry["name"])
    return m.group(0) if m else None


def list_and_render(folder: str, date: str | None = None, render: bool = False) -> dict[str, Any]:
    """The reports in ``folder`` (only those of ``date`` when given); with ``render``, each page
    is rebuilt from its JSON (a report that fails to render is listed with the error)."""
    out = []
    for entry in list_reports(folder):
        data = None
        if render or date:
            try:
                data = read_report(folder, entry["name"] + ".json")
            except (OSError, ValueError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["date"] = report_date(entry, data)
        if date and entry["date"] != date:
            continue
        if render and data is not None:
            try:
                page = renderer(entry["kind"])(data)
                entry["html"] = write_bytes(folder, entry["name"] + ".html", page.encode())
            except Exception as exc:  # noqa: BLE001 - listed, the other reports still render
                entry["error"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return {
        "job": "report",
        "folder": _fs(folder)[2],
        "date": date,
        "rendered": sum(1 for e in out if render and "error" not in e),
        "errors": sum(1 for e in out if "error" in e),
        "reports": out,
    }
