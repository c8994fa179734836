"""Import Microsoft News (MIND) behaviors/news into recpipe's raw event layout.

Input (``source_dir``): ``behaviors.tsv`` (required) and ``news.tsv`` (optional), MIND format: tab
separated, no header, no quoting.

* behaviors: impression id, user id, time (``11/12/2019 2:14:46 PM``, taken as UTC), space separated
  click history (may be empty), impressions ``N123-1 N456-0`` (1 = clicked).
* news: id, category, subcategory, title, abstract, url, title_entities, abstract_entities.

Mapping (see :data:`MAPPING`):

* each behaviors row is one request: ``request_id = session_id = "imp-<impression id>"``;
* every shown article -> ``impression`` at the row time, ``position`` = 0-based order shown;
* every ``-1`` article additionally -> ``click`` at row time + 1 s, same request/position;
* the click history -> one ``click`` per entry with ``is_history = true``, ``request_id``/``position``
  null, emitted once per user (from the user's row with the longest history; ties: earliest row,
  then smallest impression id) at ``earliest impression time of the user - 1 day - (len - i) s`` so
  that history precedes all of the user's impressions and keeps its order;
* news rows -> items (``text`` = abstract, ``tags`` = title entity labels, ``publisher`` "msn",
  ``language`` "en"); articles referenced by events but absent from news.tsv get an item row with
  null metadata and ``category`` "unknown".

Malformed behaviors rows are skipped and counted in ``manifest["counts"]["skipped_lines"]`` by reason:
``blank_line``, ``wrong_column_count``, ``bad_time``, ``missing_id`` (empty impression or user id),
``empty_impressions``, ``bad_impressions`` (a token that is not ``<id>``, ``<id>-0`` or ``<id>-1``).
Impression tokens without a label (MIND test set) become impressions without a click and are counted
as ``unlabeled_impressions``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from .rawfiles import (
    EventWriter,
    iter_line_chunks,
    merge_counters,
    prepare_out_dir,
    split_fixed_columns,
    to_epoch_ms,
    write_items,
    write_json,
)

SOURCE = "mind"
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
CLICK_DELAY_MS = 1_000
HISTORY_OFFSET_MS = 86_400_000
HISTORY_STEP_MS = 1_000
NEWS_COLUMNS = [
    "item_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]

MAPPING = {
    "request": "each behaviors.tsv row is one request; request_id = session_id = 'imp-' + impression id",
    "impression": "every shown article -> 'impression' at the row time (time column read as UTC); "
    "position = 0-based order in the impressions column",
    "click": "every article labelled -1 -> 'click' at row time + 1 s with the same request_id, session_id, position",
    "history": "the click history -> one 'click' per entry with is_history=true, request_id/session_id/position "
    "null; emitted once per user from the row with the longest history (ties: earliest row, then smallest "
    "impression id) at (user's earliest impression time - 1 day - (len(history) - i) s), i = 0-based index",
    "items": "news.tsv -> items: title, text = abstract (null if empty), category, subcategory, tags = labels of "
    "title_entities ([] if unparseable), publisher 'msn', language 'en', status 'active'; articles referenced "
    "by events but missing from news.tsv -> item with null metadata, category 'unknown', tags []",
    "ids": "MIND ids kept as is (users U..., items N...)",
}


def _entity_labels(raw: str) -> list[str]:
    if not raw:
        return []
    try:
        ents = json.loads(raw)
    except (ValueError, TypeError):
        return []
    if not isinstance(ents, list):
        return []
    labels: list[str] = []
    for e in ents:
        label = e.get("Label") if isinstance(e, dict) else None
        if isinstance(label, str) and label and label not in labels:
            labels.append(label)
    return labels


def read_news(
    path: str | os.PathLike[str], skipped: Counter[str], chunk_lines: int = 100_000
) -> pd.DataFrame:
    """news.tsv -> item DataFrame (first row wins for a duplicated id; duplicates counted)."""
    frames = []
    for lines in iter_line_chunks(path, chunk_lines):
        parts = split_fixed_columns(lines, "\t", len(NEWS_COLUMNS), skipped)
        if parts.empty:
            continue
        parts.columns = NEWS_COLUMNS
        parts["item_id"] = parts["item_id"].str.strip()
        no_id = parts["item_id"] == ""
        if no_id.any():
            skipped["missing_id"] += int(no_id.sum())
            parts = parts[~no_id]
        frames.append(parts)
    if not frames:
        return pd.DataFrame(columns=["item_id"])
    news = pd.concat(frames, ignore_index=True)
    dup = news["item_id"].duplicated(keep="first")
    if dup.any():
        skipped["duplicate_item"] += int(dup.sum())
        news = news[~dup]

    def nonempty(col: pd.Series) -> pd.Series:
        col = col.str.strip()
        return col.where(col != "", None)

    return pd.DataFrame(
        {
            "item_id": news["item_id"].to_numpy(),
            "title": nonempty(news["title"]).to_numpy(),
            "text": nonempty(news["abstract"]).to_numpy(),
            "category": nonempty(news["category"]).fillna("unknown").to_numpy(),
            "subcategory": nonempty(news["subcategory"]).to_numpy(),
            "tags": [_entity_labels(x) for x in news["title_entities"].to_numpy()],
            "publisher": "msn",
            "published_ts": None,
            "expires_ts": None,
            "language": "en",
            "status": "active",
        }
    )


def _parse_behaviors_chunk(
    lines: pd.Series, skipped: Counter[str], counters: Counter[str]
) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[None, None]:
    """-> (events DataFrame, per-row history frame [user_id, ts_ms, imp_id, hist, hist_len])."""
    parts = split_fixed_columns(lines, "\t", 5, skipped)
    if parts.empty:
        return None, None
    parts.columns = ["imp_id", "user_id", "time", "history", "impressions"]
    imp_id = parts["imp_id"].str.strip()
    user = parts["user_id"].str.strip()
    missing = (imp_id == "") | (user == "")
    ts = pd.to_datetime(parts["time"].str.strip(), format=TIME_FORMAT, errors="coerce", utc=True)
    bad_time = ts.isna() & ~missing
    tokens = parts["impressions"].str.split()
    ntok = tokens.str.len()
    empty_imp = (ntok == 0) & ~missing & ~bad_time
    skipped["missing_id"] += int(missing.sum())
    skipped["bad_time"] += int(bad_time.sum())
    skipped["empty_impressions"] += int(empty_imp.sum())
    keep = ~(missing | bad_time | empty_imp)

    # explode impression tokens, validate, drop whole rows that contain a malformed token
    tok = tokens[keep].explode()
    suffix = tok.str[-2:]
    labelled = suffix.isin(["-0", "-1"])
    item = tok.where(~labelled, tok.str[:-2])
    bad_tok = (item == "") | item.str.contains("-", regex=False)
    bad_rows = bad_tok.groupby(level=0).any()
    bad_rows = bad_rows[bad_rows].index
    skipped["bad_impressions"] += int(len(bad_rows))
    keep.loc[bad_rows] = False
    ok = ~tok.index.isin(bad_rows)
    tok, item, labelled, suffix = tok[ok], item[ok], labelled[ok], suffix[ok]
    counters["unlabeled_impressions"] += int((~labelled).sum())
    counters["requests"] += int(keep.sum())

    ts_ms = to_epoch_ms(ts[keep])
    req = "imp-" + imp_id[keep]
    rows = tok.index
    position = tok.groupby(level=0).cumcount().to_numpy()
    row_ts = ts_ms.reindex(rows).to_numpy()
    row_req = req.reindex(rows).to_numpy()
    impressions = pd.DataFrame(
        {
            "user_id": user.reindex(rows).to_numpy(),
            "item_id": item.to_numpy(),
            "event_type": "impression",
            "ts_ms": row_ts,
            "session_id": row_req,
            "request_id": row_req,
            "position": position,
        }
    )
    clicked = (suffix == "-1").to_numpy()
    clicks = impressions[clicked].copy()
    clicks["event_type"] = "click"
    clicks["ts_ms"] = clicks["ts_ms"] + CLICK_DELAY_MS
    events = pd.concat([impressions, clicks], ignore_index=True)

    hist = parts.loc[keep, "history"].str.strip()
    hist_rows = pd.DataFrame(
        {
            "user_id": user[keep].to_numpy(),
            "ts_ms": ts_ms.to_numpy(),
            "imp_id": imp_id[keep].to_numpy(),
            "hist": hist.to_numpy(),
            "hist_len": hist.str.split().str.len().fillna(0).astype("int64").to_numpy(),
        }
    )
    return events, hist_rows


def _reduce_users(frame: pd.DataFrame) -> pd.DataFrame:
    """Per user: earliest impression time (``min_ts_ms``) and the row with the longest history
    (ties: earliest row, then smallest impression id). Idempotent, so partial results can be
    concatenated and reduced again."""
    if "min_ts_ms" not in frame.columns:
        frame = frame.assign(min_ts_ms=frame["ts_ms"])
    min_ts = frame.groupby("user_id", sort=False)["min_ts_ms"].min()
    imp_num = pd.to_numeric(frame["imp_id"], errors="coerce")
    best = (
        frame.assign(_imp_num=imp_num)
        .sort_values(
            ["user_id", "hist_len", "ts_ms", "_imp_num", "imp_id"],
            ascending=[True, False, True, True, True],
            kind="stable",
        )
        .drop_duplicates("user_id", keep="first")
        .drop(columns="_imp_num")
        .set_index("user_id")
    )
    best["min_ts_ms"] = min_ts.reindex(best.index).astype("int64")
    return best.reset_index()


def _history_events(users: pd.DataFrame) -> pd.DataFrame:
    users = users[users["hist_len"] > 0]
    if users.empty:
        return pd.DataFrame()
    tok = users["hist"].str.split().explode()
    i = tok.groupby(level=0).cumcount().to_numpy()
    n = users["hist_len"].reindex(tok.index).to_numpy()
    base = users["min_ts_ms"].reindex(tok.index).to_numpy()
    return pd.DataFrame(
        {
            "user_id": users["user_id"].reindex(tok.index).to_numpy(),
            "item_id": tok.to_numpy(),
            "event_type": "click",
            "ts_ms": base - HISTORY_OFFSET_MS - (n - i) * HISTORY_STEP_MS,
            "is_history": True,
        }
    )


def import_mind(
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    chunk_lines: int = 20_000,
    spill_rows: int = 2_000_000,
) -> dict[str, Any]:
    """Import a MIND folder (behaviors.tsv [+ news.tsv]) into ``out_dir``; returns the manifest."""
    src = Path(source_dir)
    behaviors_path = src / "behaviors.tsv"
    news_path = src / "news.tsv"
    if not behaviors_path.is_file():
        raise FileNotFoundError(f"{behaviors_path} not found (expected a MIND folder)")
    out = prepare_out_dir(out_dir, overwrite=overwrite)

    skipped_behaviors: Counter[str] = Counter()
    skipped_news: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    users: pd.DataFrame | None = None
    with EventWriter(out, spill_rows=spill_rows) as writer:
        for lines in iter_line_chunks(behaviors_path, chunk_lines):
            events, hist_rows = _parse_behaviors_chunk(lines, skipped_behaviors, counters)
            if events is None:
                continue
            writer.add(events)
            part = _reduce_users(hist_rows)
            users = part if users is None else _reduce_users(pd.concat([users, part], ignore_index=True))
        if users is not None:
            for start in range(0, len(users), 200_000):
                hist_events = _history_events(users.iloc[start : start + 200_000])
                counters["history_clicks"] += len(hist_events)
                writer.add(hist_events)
        stats = writer.close()
        referenced = writer.item_ids

    news = read_news(news_path, skipped_news) if news_path.is_file() else pd.DataFrame(columns=["item_id"])
    ref = pd.Series(referenced.to_pandas(), dtype=object)
    missing_ids = ref[~ref.isin(news["item_id"])].to_numpy()
    missing_items = pd.DataFrame({"item_id": missing_ids, "category": "unknown", "publisher": "msn"})
    items = pd.concat([news, missing_items], ignore_index=True) if len(missing_items) else news
    n_items = write_items(out, items)

    events_by_type = stats["events"]
    manifest = {
        "source": SOURCE,
        "source_dir": str(src.resolve()),
        "files": {"behaviors": behaviors_path.name, "news": news_path.name if news_path.is_file() else None},
        "counts": {
            "events": events_by_type,
            "events_total": stats["events_total"],
            "requests": int(counters["requests"]),
            "clicks_non_history": int(events_by_type.get("click", 0) - counters["history_clicks"]),
            "history_clicks": int(counters["history_clicks"]),
            "unlabeled_impressions": int(counters["unlabeled_impressions"]),
            "users": stats["users"],
            "items": int(n_items),
            "items_with_metadata": int(len(news)),
            "items_in_events": stats["items_in_events"],
            "items_without_metadata": int(len(missing_ids)),
            "event_files": stats["event_files"],
            "skipped_lines": {
                "behaviors.tsv": merge_counters(skipped_behaviors),
                "news.tsv": merge_counters(skipped_news),
            },
        },
        "time_range": {"min_ts": stats["min_ts"], "max_ts": stats["max_ts"]},
        "mapping": MAPPING,
    }
    write_json(out / "manifest.json", manifest)
    return manifest
