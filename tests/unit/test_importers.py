"""Importers of public data sets (MIND, MovieLens) into recpipe's raw event layout.

Tiny hand-written inputs check the exact events and item rows; the real samples under the shared data
folder check the counts stated in its README (skipped when the folder is absent)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from recpipe.datasets.mind import import_mind
from recpipe.datasets.movielens import detect_format, import_movielens
from recpipe.datasets.rawfiles import EVENT_FIELDS, ITEM_FIELDS

pytestmark = pytest.mark.unit


def shared_data_dir() -> Path:
    """$RECPIPE_SHARED_DATA, else ``<repo>/../shared/data``."""
    env = os.environ.get("RECPIPE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def read_events(out: Path) -> list[dict]:
    """All events in file order; also checks each event lies in the file of its UTC hour."""
    events = []
    files = sorted((out / "events").glob("*/*.jsonl"))
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            e = json.loads(line)
            assert list(e) == list(EVENT_FIELDS)
            assert f"{f.parent.name}T{f.stem}" == e["ts"][:13], (f, e["ts"])
            events.append(e)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    return events


def read_items(out: Path) -> dict[str, dict]:
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(list(r) == list(ITEM_FIELDS) for r in rows)
    assert [r["item_id"] for r in rows] == sorted(r["item_id"] for r in rows)
    return {r["item_id"]: r for r in rows}


def slim(e: dict) -> tuple:
    return (
        e["user_id"],
        e["item_id"],
        e["event_type"],
        e["ts"],
        e["request_id"],
        e["position"],
        e["is_history"],
    )


def iso(unix: int, ms: int = 0) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


# ---------------------------------------------------------------------------------------------------- MIND

BEHAVIORS = [
    "1\tU1\t11/12/2019 2:14:46 PM\tN1 N2\tN10-1 N11-0 N12-0",
    "2\tU2\t11/13/2019 9:00:00 AM\t\tN11-0 N13-1",
    "3\tU1\t11/11/2019 11:59:59 PM\tN1\tN12-0 N10-0",  # same user, shorter history, earlier time
    "4\tU3\tnot a time\t\tN10-1",  # bad time
    "5\tU3\t11/12/2019 1:00:00 PM\tN1",  # 4 columns
    "6\tU4\t11/12/2019 1:00:00 PM\t\tN10-2 N11-0",  # bad label
]
ENT = '[{"Label": "Fort Lauderdale, Florida", "Type": "G", "WikidataId": "Q1", "Confidence": 1.0}]'
NEWS = [
    f"N10\tnews\tnewsus\tTitle ten\tAbstract ten\thttps://x/10\t{ENT}\t[]",
    "N11\tsports\tmore_sports\tTitle eleven\t\thttps://x/11\tnot json\t[]",
    "N1\tlifestyle\tlifestyleroyals\tTitle one\tAbstract one\thttps://x/1\t[]\t[]",
]


def write_mind(d: Path, behaviors=BEHAVIORS, news=NEWS) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "behaviors.tsv").write_text("\n".join(behaviors) + "\n", encoding="utf-8")
    (d / "news.tsv").write_text("\n".join(news) + "\n", encoding="utf-8")
    return d


def test_mind_events_exact(tmp_path):
    manifest = import_mind(write_mind(tmp_path / "mind"), tmp_path / "out")
    events = read_events(tmp_path / "out")
    assert [slim(e) for e in events] == [
        # U1's history (from row 1, the longest): 1 day + (2 - i) s before U1's earliest impression
        ("U1", "N1", "click", "2019-11-10T23:59:57.000Z", None, None, True),
        ("U1", "N2", "click", "2019-11-10T23:59:58.000Z", None, None, True),
        ("U1", "N12", "impression", "2019-11-11T23:59:59.000Z", "imp-3", 0, False),
        ("U1", "N10", "impression", "2019-11-11T23:59:59.000Z", "imp-3", 1, False),
        ("U1", "N10", "impression", "2019-11-12T14:14:46.000Z", "imp-1", 0, False),
        ("U1", "N11", "impression", "2019-11-12T14:14:46.000Z", "imp-1", 1, False),
        ("U1", "N12", "impression", "2019-11-12T14:14:46.000Z", "imp-1", 2, False),
        ("U1", "N10", "click", "2019-11-12T14:14:47.000Z", "imp-1", 0, False),
        ("U2", "N11", "impression", "2019-11-13T09:00:00.000Z", "imp-2", 0, False),
        ("U2", "N13", "impression", "2019-11-13T09:00:00.000Z", "imp-2", 1, False),
        ("U2", "N13", "click", "2019-11-13T09:00:01.000Z", "imp-2", 1, False),
    ]
    for e in events:
        assert e["session_id"] == e["request_id"]
        assert (
            e["dwell_ms"] is None and e["device"] is None and e["country"] is None and e["propensity"] is None
        )
    assert sorted(p.relative_to(tmp_path / "out" / "events").as_posix() for p in (tmp_path / "out").rglob("*.jsonl")
                  if "events" in p.parts) == [
        "2019-11-10/23.jsonl", "2019-11-11/23.jsonl", "2019-11-12/14.jsonl", "2019-11-13/09.jsonl",
    ]  # fmt: skip

    c = manifest["counts"]
    assert c["events"] == {"impression": 7, "click": 4}
    assert (c["clicks_non_history"], c["history_clicks"], c["requests"], c["users"]) == (2, 2, 3, 2)
    assert c["skipped_lines"]["behaviors.tsv"] == {
        "bad_impressions": 1,
        "bad_time": 1,
        "wrong_column_count": 1,
    }
    assert (c["items"], c["items_without_metadata"]) == (6, 3)
    assert manifest["source"] == "mind"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_mind_items(tmp_path):
    import_mind(write_mind(tmp_path / "mind"), tmp_path / "out")
    items = read_items(tmp_path / "out")
    assert list(items) == ["N1", "N10", "N11", "N12", "N13", "N2"]
    assert items["N10"] == {
        "item_id": "N10", "title": "Title ten", "text": "Abstract ten", "category": "news", "subcategory": "newsus",
        "tags": ["Fort Lauderdale, Florida"], "publisher": "msn", "published_ts": None, "expires_ts": None,
        "language": "en", "status": "active",
    }  # fmt: skip
    assert items["N11"]["tags"] == [] and items["N11"]["text"] is None  # unparseable entities, empty abstract
    for missing in ("N2", "N12", "N13"):  # shown/clicked but not in news.tsv
        r = items[missing]
        assert r["category"] == "unknown" and r["title"] is None and r["text"] is None
        assert r["tags"] == [] and r["status"] == "active"


def test_mind_output_is_deterministic(tmp_path):
    import_mind(write_mind(tmp_path / "a"), tmp_path / "out_a")
    import_mind(write_mind(tmp_path / "b", behaviors=BEHAVIORS[::-1], news=NEWS[::-1]), tmp_path / "out_b",
                chunk_lines=2, spill_rows=3)  # fmt: skip
    files_a = sorted(p.relative_to(tmp_path / "out_a") for p in (tmp_path / "out_a").rglob("*.jsonl"))
    files_b = sorted(p.relative_to(tmp_path / "out_b") for p in (tmp_path / "out_b").rglob("*.jsonl"))
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "out_a" / rel).read_bytes() == (tmp_path / "out_b" / rel).read_bytes(), rel
    assert not list((tmp_path / "out_b").glob(".spool-*"))  # spill files cleaned up


def test_refuses_to_overwrite_without_flag(tmp_path):
    src = write_mind(tmp_path / "mind")
    import_mind(src, tmp_path / "out")
    with pytest.raises(FileExistsError):
        import_mind(src, tmp_path / "out")
    manifest = import_mind(src, tmp_path / "out", overwrite=True)
    assert manifest["counts"]["events_total"] == len(read_events(tmp_path / "out"))


# ---------------------------------------------------------------------------------------------------- MovieLens

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip


def flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


def write_ml100k(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "u.data").write_text(
        "1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t20\t4\t891717742\nx\t10\t3\t881250949\n2\t30\t2\t881250951\n",
        encoding="latin-1",
    )
    (d / "u.item").write_bytes(
        (
            f"10|Richard III (1995)|22-Jan-1996||http://us.imdb.com/x|{flags('Drama', 'War')}\n"
            f"20|Cit\xe9 des enfants perdus, La (1995)|||http://us.imdb.com/y|{flags('Sci-Fi', 'Adventure')}\n"
            f"40|unknown|||http://us.imdb.com/z|{flags('unknown')}\n"
        ).encode("latin-1")
    )
    (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n", encoding="latin-1")
    return d


def test_movielens_100k_exact(tmp_path):
    src = write_ml100k(tmp_path / "ml-100k")
    assert detect_format(src) == "ml-100k"
    manifest = import_movielens(src, tmp_path / "out")
    events = read_events(tmp_path / "out")
    assert [slim(e) for e in events] == [
        ("ml-u1", "ml-i10", "impression", iso(881250949), None, None, False),
        ("ml-u1", "ml-i10", "like", iso(881250949, 1), None, None, False),
        ("ml-u2", "ml-i10", "impression", iso(881250950), None, None, False),
        ("ml-u2", "ml-i30", "impression", iso(881250951), None, None, False),
        ("ml-u1", "ml-i20", "impression", iso(891717742), None, None, False),
        ("ml-u1", "ml-i20", "like", iso(891717742, 1), None, None, False),
    ]
    assert all(e["session_id"] is None for e in events)
    c = manifest["counts"]
    assert c["events"] == {"impression": 4, "like": 2}
    assert c["skipped_lines"]["u.data"] == {"bad_id": 1}
    assert (c["users"], c["items"], c["items_without_metadata"]) == (2, 4, 1)

    items = read_items(tmp_path / "out")
    assert list(items) == ["ml-i10", "ml-i20", "ml-i30", "ml-i40"]
    assert items["ml-i10"] == {
        "item_id": "ml-i10", "title": "Richard III (1995)", "text": "Richard III (1995) Drama War",
        "category": "Drama", "subcategory": "War", "tags": ["drama", "war"], "publisher": None,
        "published_ts": "1996-01-22T00:00:00.000Z", "expires_ts": None, "language": "en", "status": "active",
    }  # fmt: skip
    it20 = items["ml-i20"]  # latin-1 title, genres in u.genre order, no release date -> year of the title
    assert it20["title"] == "Cit\xe9 des enfants perdus, La (1995)"
    assert (it20["category"], it20["subcategory"], it20["tags"]) == (
        "Adventure",
        "Sci-Fi",
        ["adventure", "sci-fi"],
    )
    assert it20["published_ts"] == "1995-01-01T00:00:00.000Z"
    assert (
        items["ml-i30"]["category"] == "unknown" and items["ml-i30"]["title"] is None
    )  # rated, not in u.item
    assert items["ml-i40"]["tags"] == [] and items["ml-i40"]["published_ts"] is None


def test_movielens_latest_exact(tmp_path):
    src = tmp_path / "ml-latest-small"
    src.mkdir()
    (src / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.5,964982703\n1,2,3.5,964981247\n7,1,4.0,964982224\n7,3,oops,1\n"
    )
    (src / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n"
    )
    assert detect_format(src) == "ml-latest"
    manifest = import_movielens(src, tmp_path / "out")
    assert [slim(e) for e in read_events(tmp_path / "out")] == [
        ("ml-u1", "ml-i2", "impression", iso(964981247), None, None, False),
        ("ml-u7", "ml-i1", "impression", iso(964982224), None, None, False),
        ("ml-u7", "ml-i1", "like", iso(964982224, 1), None, None, False),
        ("ml-u1", "ml-i1", "impression", iso(964982703), None, None, False),
        ("ml-u1", "ml-i1", "like", iso(964982703, 1), None, None, False),
    ]
    assert manifest["counts"]["skipped_lines"]["ratings.csv"] == {"bad_rating": 1}
    assert manifest["counts"]["items_without_metadata"] == 0
    items = read_items(tmp_path / "out")
    assert items["ml-i1"]["text"] == "Toy Story (1995) Adventure Animation Children Comedy Fantasy"
    assert items["ml-i1"]["tags"] == ["adventure", "animation", "children", "comedy", "fantasy"]
    assert items["ml-i2"]["title"] == "American President, The (1995)"
    assert (items["ml-i2"]["category"], items["ml-i2"]["subcategory"]) == ("Comedy", "Drama")
    assert items["ml-i3"]["category"] == "unknown" and items["ml-i3"]["tags"] == []
    assert items["ml-i3"]["published_ts"] is None


def test_movielens_rejects_unknown_folder(tmp_path):
    with pytest.raises(ValueError, match="not a MovieLens folder"):
        import_movielens(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------- real samples


def _real(rel: str) -> Path:
    d = shared_data_dir() / rel
    if not d.is_dir():
        pytest.skip(f"shared data set {d} not found (set RECPIPE_SHARED_DATA to the shared data folder)")
    return d


def test_real_mind_sample_counts(tmp_path):
    src = _real("mind_small_subset")
    manifest = import_mind(src, tmp_path / "out")
    c = manifest["counts"]
    assert c["requests"] == 5_000 and c["skipped_lines"]["behaviors.tsv"] == {}
    assert c["events"]["impression"] == 189_359
    assert c["clicks_non_history"] == 7_542
    assert c["users"] == 4_637
    events = read_events(tmp_path / "out")
    assert len(events) == c["events_total"]
    assert sum(e["event_type"] == "click" and not e["is_history"] for e in events) == 7_542
    first_imp = {}
    for e in events:
        if e["event_type"] == "impression":
            first_imp.setdefault(e["user_id"], e["ts"])
    assert all(e["ts"] < first_imp[e["user_id"]] for e in events if e["is_history"])
    assert c["items"] == len(read_items(tmp_path / "out"))


def test_real_movielens_100k_counts(tmp_path):
    src = _real("movielens/ml-100k")
    ratings = pd.read_csv(src / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"])
    manifest = import_movielens(src, tmp_path / "out")
    c = manifest["counts"]
    assert c["events"]["impression"] == 100_000 == len(ratings)
    assert c["events"]["like"] == int((ratings["rating"] >= 4).sum())
    assert (c["users"], c["items"], c["items_without_metadata"]) == (943, 1_682, 0)
    events = read_events(tmp_path / "out")
    assert sum(e["event_type"] == "like" for e in events) == c["events"]["like"]


def test_real_movielens_latest_small_counts(tmp_path):
    src = _real("movielens/ml-latest-small")
    ratings = pd.read_csv(src / "ratings.csv")
    manifest = import_movielens(src, tmp_path / "out")
    c = manifest["counts"]
    assert c["events"]["impression"] == 100_836 == len(ratings)
    assert c["events"]["like"] == int((ratings["rating"] >= 4).sum())
    assert (c["users"], c["items"]) == (610, 9_742)
