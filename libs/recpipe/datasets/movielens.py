"""Import MovieLens ratings/movies into recpipe's raw event layout.

Two layouts are detected by the files present in ``source_dir``:

* ``ml-100k``: ``u.data`` (user, item, rating, unix time; tab separated), ``u.item`` (pipe separated,
  latin-1: id|title|release date|video date|url|19 genre flags) and ``u.genre`` (genre names).
* ``ml-latest`` (ml-latest-small, ml-latest, ml-20m/25m/32m): ``ratings.csv`` (userId,movieId,rating,
  timestamp) and ``movies.csv`` (movieId,title,genres with ``|`` separated genres).

Mapping (see :data:`MAPPING`): every rating -> an ``impression`` (the user was exposed to / watched the
movie) at the rating time; a rating >= 4 additionally -> a ``like`` at the same time + 1 ms.
``session_id``/``request_id``/``position`` are null. Ids are prefixed: users ``ml-u<id>``, items
``ml-i<id>``. Movies -> items: title, text = title + " " + genres (space joined), category = first
genre ("unknown" if the movie has none), subcategory = second genre or null, tags = all genres
lower-cased, published_ts = release date (ml-100k) else 1 January of the year in the title, else null;
language "en". The placeholder genres ``unknown`` (ml-100k) and ``(no genres listed)`` count as none.

Malformed rating lines are skipped and counted by reason (``blank_line``, ``wrong_column_count``,
``bad_id``, ``bad_rating``, ``bad_timestamp``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .rawfiles import (
    EventWriter,
    format_ts_ms,
    iter_line_chunks,
    merge_counters,
    prepare_out_dir,
    split_fixed_columns,
    write_items,
    write_json,
)

USER_PREFIX = "ml-u"
ITEM_PREFIX = "ml-i"
LIKE_THRESHOLD = 4.0
LIKE_DELAY_MS = 1
PLACEHOLDER_GENRES = {"unknown", "(no genres listed)"}
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip

MAPPING = {
    "impression": "every rating -> 'impression' (exposure: the user saw/watched the movie) at the rating's unix time",
    "like": f"rating >= {LIKE_THRESHOLD:g} -> additionally 'like' at rating time + {LIKE_DELAY_MS} ms",
    "context": "session_id, request_id, position, propensity are null; is_history false",
    "ids": f"users '{USER_PREFIX}<userId>', items '{ITEM_PREFIX}<movieId>'",
    "items": "movies -> items: title, text = title + ' ' + genres joined by ' ', category = first genre "
    "('unknown' when none), subcategory = second genre or null, tags = genres lower-cased, published_ts = "
    "release date (ml-100k) else 1 Jan of the year in the title else null, language 'en', status 'active'; "
    "placeholder genres 'unknown' / '(no genres listed)' count as none; rated movies missing from the movie "
    "file -> item with null metadata, category 'unknown'",
}


def detect_format(source_dir: str | os.PathLike[str]) -> str:
    """``"ml-100k"`` or ``"ml-latest"`` depending on the files present; ValueError otherwise."""
    src = Path(source_dir)
    if (src / "u.data").is_file():
        return "ml-100k"
    if (src / "ratings.csv").is_file():
        return "ml-latest"
    raise ValueError(f"{src} is not a MovieLens folder (expected u.data or ratings.csv)")


# --------------------------------------------------------------------------- ratings -> events


def _rating_events(parts: pd.DataFrame, skipped: Counter[str], counters: Counter[str]) -> pd.DataFrame:
    parts.columns = ["user", "item", "rating", "ts"]
    user = parts["user"].str.strip()
    item = parts["item"].str.strip()
    bad_id = ~(user.str.fullmatch(r"\d+") & item.str.fullmatch(r"\d+"))
    rating = pd.to_numeric(parts["rating"].str.strip(), errors="coerce")
    ts = pd.to_numeric(parts["ts"].str.strip(), errors="coerce")
    bad_rating = rating.isna() & ~bad_id
    bad_ts = (ts.isna() | (ts != np.floor(ts))) & ~bad_id & ~bad_rating
    skipped["bad_id"] += int(bad_id.sum())
    skipped["bad_rating"] += int(bad_rating.sum())
    skipped["bad_timestamp"] += int(bad_ts.sum())
    keep = ~(bad_id | bad_rating | bad_ts)
    user, item, rating, ts = user[keep], item[keep], rating[keep], ts[keep]
    # normalise numeric ids ("007" -> "7") so users/items match the movie file
    user = USER_PREFIX + user.astype("int64").astype(str)
    item = ITEM_PREFIX + item.astype("int64").astype(str)
    ts_ms = ts.astype("int64") * 1000
    counters["ratings"] += int(keep.sum())
    liked = (rating >= LIKE_THRESHOLD).to_numpy()
    counters["ratings_ge_4"] += int(liked.sum())
    impressions = pd.DataFrame(
        {
            "user_id": user.to_numpy(),
            "item_id": item.to_numpy(),
            "event_type": "impression",
            "ts_ms": ts_ms.to_numpy(),
        }
    )
    likes = impressions[liked].copy()
    likes["event_type"] = "like"
    likes["ts_ms"] = likes["ts_ms"] + LIKE_DELAY_MS
    return pd.concat([impressions, likes], ignore_index=True)


def _iter_ratings(src: Path, fmt: str, chunk_lines: int, skipped: Counter[str]) -> Iterator[pd.DataFrame]:
    if fmt == "ml-100k":
        path, sep, header = src / "u.data", "\t", False
    else:
        path, sep, header = src / "ratings.csv", ",", True
    first = True
    for lines in iter_line_chunks(path, chunk_lines, encoding="latin-1" if fmt == "ml-100k" else "utf-8"):
        if first and header and len(lines) and lines.iloc[0].lower().startswith("userid"):
            lines = lines.iloc[1:]
        first = False
        parts = split_fixed_columns(lines, sep, 4, skipped)
        if not parts.empty:
            yield parts


# --------------------------------------------------------------------------- movies -> items

_YEAR_RE = r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$"


def _year_ts(titles: pd.Series) -> pd.Series:
    year = pd.to_numeric(titles.str.extract(_YEAR_RE, expand=False), errors="coerce")
    dt = pd.to_datetime(
        year.astype("Int64").astype(str) + "-01-01", format="%Y-%m-%d", errors="coerce", utc=True
    )
    return dt


def _ts_strings(dt: pd.Series) -> npt.NDArray[Any]:
    ms = pd.Series(np.nan, index=dt.index, dtype="float64")
    ok = dt.notna()
    if ok.any():
        ms[ok] = (dt[ok].astype("datetime64[ns, UTC]").astype("int64") // 1_000_000).astype("float64")
    return format_ts_ms(ms.to_numpy())


def _items_frame(
    ids: pd.Series, titles: pd.Series, genres: list[list[str]], published: pd.Series
) -> pd.DataFrame:
    titles = titles.str.strip()
    titles = titles.where(titles != "", None)
    genres = [[g for g in gs if g and g not in PLACEHOLDER_GENRES] for gs in genres]
    text = [
        " ".join(([t] if t else []) + gs) or None for t, gs in zip(titles.to_numpy(), genres, strict=True)
    ]
    return pd.DataFrame(
        {
            "item_id": (ITEM_PREFIX + ids.astype("int64").astype(str)).to_numpy(),
            "title": titles.to_numpy(),
            "text": text,
            "category": [gs[0] if gs else "unknown" for gs in genres],
            "subcategory": [gs[1] if len(gs) > 1 else None for gs in genres],
            "tags": [[g.lower() for g in gs] for gs in genres],
            "publisher": None,
            "published_ts": _ts_strings(published),
            "expires_ts": None,
            "language": "en",
            "status": "active",
        }
    )


def _read_movies_100k(src: Path, skipped: Counter[str]) -> pd.DataFrame:
    genre_names = list(ML100K_GENRES)
    gpath = src / "u.genre"
    if gpath.is_file():
        g = pd.read_csv(gpath, sep="|", header=None, names=["name", "idx"], encoding="latin-1", dtype=str)
        g = g.dropna()
        g["idx"] = pd.to_numeric(g["idx"], errors="coerce")
        g = g.dropna().sort_values("idx")
        if len(g):
            genre_names = g["name"].tolist()
    ncols = 5 + len(genre_names)
    frames = []
    for lines in iter_line_chunks(src / "u.item", 100_000, encoding="latin-1"):
        parts = split_fixed_columns(lines, "|", ncols, skipped)
        if not parts.empty:
            frames.append(parts)
    if not frames:
        return pd.DataFrame(columns=["item_id"])
    m = pd.concat(frames, ignore_index=True)
    ids = m[0].str.strip()
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        skipped["bad_id"] += int(bad.sum())
        m, ids = m[~bad], ids[~bad]
    flags = m[list(range(5, ncols))].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    names = np.array(genre_names, dtype=object)
    genres = [list(names[row]) for row in flags]
    released = pd.to_datetime(m[2].str.strip(), format="%d-%b-%Y", errors="coerce", utc=True)
    published = released.fillna(_year_ts(m[1]))
    return _items_frame(ids, m[1], genres, published)


def _read_movies_latest(src: Path, skipped: Counter[str]) -> pd.DataFrame:
    path = src / "movies.csv"
    frames = []

    def bad_line(fields: list[str]) -> None:  # count and drop rows with a wrong number of fields
        skipped["wrong_column_count"] += 1
        return None

    for chunk in pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        chunksize=200_000,
        quoting=csv.QUOTE_MINIMAL,
        engine="python",
        on_bad_lines=bad_line,
    ):
        frames.append(chunk)
    if not frames:
        return pd.DataFrame(columns=["item_id"])
    m = pd.concat(frames, ignore_index=True)
    ids = m["movieId"].str.strip()
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        skipped["bad_id"] += int(bad.sum())
        m, ids = m[~bad], ids[~bad]
    genres = [g.split("|") if g else [] for g in m["genres"].str.strip().to_numpy()]
    return _items_frame(ids, m["title"], genres, _year_ts(m["title"].str.strip()))


# --------------------------------------------------------------------------- entry point


def import_movielens(
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    chunk_lines: int = 1_000_000,
    spill_rows: int = 4_000_000,
) -> dict[str, Any]:
    """Import a MovieLens folder (ml-100k or ml-latest[-small] layout) into ``out_dir``; returns the manifest."""
    src = Path(source_dir)
    fmt = detect_format(src)
    out = prepare_out_dir(out_dir, overwrite=overwrite)
    skipped_ratings: Counter[str] = Counter()
    skipped_movies: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    with EventWriter(out, spill_rows=spill_rows) as writer:
        for parts in _iter_ratings(src, fmt, chunk_lines, skipped_ratings):
            writer.add(_rating_events(parts, skipped_ratings, counters))
        stats = writer.close()
        referenced = writer.item_ids

    if fmt == "ml-100k":
        movies_file = "u.item"
        movies = _read_movies_100k(src, skipped_movies) if (src / movies_file).is_file() else None
    else:
        movies_file = "movies.csv"
        movies = _read_movies_latest(src, skipped_movies) if (src / movies_file).is_file() else None
    if movies is None:
        movies = pd.DataFrame(columns=["item_id"])
    dup = movies["item_id"].duplicated(keep="first")
    if dup.any():
        skipped_movies["duplicate_item"] += int(dup.sum())
        movies = movies[~dup]
    ref = pd.Series(referenced.to_pandas(), dtype=object)
    missing_ids = ref[~ref.isin(movies["item_id"])].to_numpy()
    missing = pd.DataFrame({"item_id": missing_ids, "category": "unknown"})
    items = pd.concat([movies, missing], ignore_index=True) if len(missing) else movies
    n_items = write_items(out, items)

    ratings_file = "u.data" if fmt == "ml-100k" else "ratings.csv"
    manifest = {
        "source": f"movielens-{src.name}" if src.name.startswith("ml-") else f"movielens:{fmt}",
        "format": fmt,
        "source_dir": str(src.resolve()),
        "files": {"ratings": ratings_file, "movies": movies_file if (src / movies_file).is_file() else None},
        "counts": {
            "events": stats["events"],
            "events_total": stats["events_total"],
            "ratings": int(counters["ratings"]),
            "ratings_ge_4": int(counters["ratings_ge_4"]),
            "users": stats["users"],
            "items": int(n_items),
            "items_with_metadata": int(len(movies)),
            "items_in_events": stats["items_in_events"],
            "items_without_metadata": int(len(missing_ids)),
            "event_files": stats["event_files"],
            "skipped_lines": {
                ratings_file: merge_counters(skipped_ratings),
                movies_file: merge_counters(skipped_movies),
            },
        },
        "time_range": {"min_ts": stats["min_ts"], "max_ts": stats["max_ts"]},
        "mapping": MAPPING,
    }
    write_json(out / "manifest.json", manifest)
    return manifest
