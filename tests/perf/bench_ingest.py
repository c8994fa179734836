"""Ingest benchmark: events/s, peak memory and the time split at 10^5 and 10^6 events, next to
the same job written in DuckDB SQL over the same files (the yardstick of issue #12: recpipe
ingest of 10^6 events within 4x of it).

recpipe does not depend on DuckDB: the yardstick runs in its own environment,
``build/bench-duckdb-venv``, which the bench makes on first use (``pip install duckdb``). When it
cannot (no network), the run's JSON says why under ``yardstick.skipped``. That run is this file
as a script: ``<that venv>/bin/python tests/perf/bench_ingest.py duckdb < spec.json``; it needs
only the standard library and DuckDB, so nothing of recpipe is imported at module level.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recpipe.config import Config

REPO = Path(__file__).resolve().parents[2]
DUCKDB_REQUIREMENT = "duckdb==2.0.1"
YARDSTICK_VENV = REPO / "build" / "bench-duckdb-venv"
# The machine's two cores, as recpipe's local[2].
YARDSTICK_THREADS = 2
TARGET_RATIO = 4.0
# The silver.events columns compared row by row between the two outputs (not batch_id or
# ingested_at, which name the run).
COMPARED_COLUMNS = (
    "event_id, user_id, item_id, event_type, epoch_us(event_ts) AS event_ts, session_id, request_id, "
    "position, dwell_ms, device, country, propensity, is_history, list_run_id, arm, reason"
)
# The raw field read under another name: `reason` is the quarantine reason's column (as in
# recpipe.events.transforms.REASON_CODE).
RAW_RENAMED = {"reason": "reason_code"}


def bench(out_dir: Path, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict:
    from recpipe.config import load_config
    from recpipe.datasets.synthetic import generate
    from recpipe.events.ingest import run_ingest
    from recpipe.spark import build_session
    from tests.perf.common import PeakMemory

    python, unavailable = yardstick_python()
    results = []
    for n in sizes:
        work = out_dir / f"ingest-{n}"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        gen = generate(work / "raw", events=n, seed=42)
        gen_s = time.perf_counter() - t0
        cfg = load_config(
            "conf/local.yaml",
            [f"lake.root={work / 'lake'}", f"data.raw_dir={work / 'raw'}", "spark.show_progress=false"],
        )
        t0 = time.perf_counter()
        spark = build_session(cfg, "bench")
        spark.range(1).count()  # start-up excluded from the figures below
        startup_s = time.perf_counter() - t0
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            summary = run_ingest(cfg, spark, input_dir=str(work / "raw"), batch_id=f"bench-{n}")
            wall = time.perf_counter() - t0
        run = {
            "events_clean": gen.clean_events,
            "input_records": summary["input_records"],
            "accepted": summary["accepted"],
            "generate_s": round(gen_s, 2),
            "spark_startup_s": round(startup_s, 2),
            "ingest_s": round(wall, 2),
            "records_per_s": round(summary["input_records"] / wall),
            "peak_memory_mib": mem.peak_mib,
            "timings_s": summary["timings_s"],
            "target": "10^6 events < 60 s excluding Spark start-up",
            "meets_target": (wall < 60) if n >= 1_000_000 else None,
        }
        if python is None:
            run["yardstick"] = {"skipped": unavailable}
        else:
            run.update(against_yardstick(python, yardstick_spec(cfg, work), summary, wall, n))
        results.append(run)
        shutil.rmtree(work, ignore_errors=True)
    return {"benchmark": "ingest", "runs": results}


def yardstick_python() -> tuple[Path | None, str | None]:
    """The DuckDB environment's interpreter (made and installed on first use), or None and why not."""
    python = YARDSTICK_VENV / "bin" / "python"
    version = DUCKDB_REQUIREMENT.split("==")[1]
    check = f"import duckdb, sys; sys.exit(duckdb.__version__ != {version!r})"
    if python.exists() and subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
        return python, None
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(YARDSTICK_VENV)],
        # One retry with a short timeout: without network the bench says so in seconds.
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "1"]
        + ["--timeout", "15", DUCKDB_REQUIREMENT],
    ]
    for cmd in steps:
        try:
            subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
            return None, f"cannot install {DUCKDB_REQUIREMENT} into {YARDSTICK_VENV}: {last[0]}"
        except subprocess.TimeoutExpired:
            return None, f"installing {DUCKDB_REQUIREMENT} into {YARDSTICK_VENV} took over 600 s"
    return python, None


def yardstick_spec(cfg: Config, work: Path) -> dict[str, Any]:
    """The job for DuckDB, with the rules taken from recpipe's own config and transforms."""
    from deltalake import DeltaTable

    from recpipe import constants as C
    from recpipe.events import transforms as T

    ipad, opad = T._hmac_pads(cfg.pseudonym_key())
    return {
        "raw_dir": str((work / "raw").resolve()),
        "out_dir": str((work / "duckdb").resolve()),
        "threads": YARDSTICK_THREADS,
        "batch_id": "yardstick",
        "fields": C.RAW_FIELDS,
        "required": C.REQUIRED_RAW_FIELDS,
        "allowed_event_types": cfg.ingest.allowed_event_types,
        "aliases": cfg.ingest.event_type_aliases,
        "min_ts": cfg.ingest.min_event_ts.isoformat(),
        "max_future_seconds": cfg.ingest.max_future_seconds,
        "int_re": T._INT_RE,
        "iso_re": T._ISO_RE,
        "hmac_pads": [ipad, opad],
        # recpipe's silver.events files, compared with the yardstick's after both ran.
        "recpipe_silver": [
            f.removeprefix("file://")
            for f in DeltaTable(str(work / "lake" / "silver" / "events")).file_uris()
        ],
    }


def against_yardstick(
    python: Path, spec: dict[str, Any], summary: dict[str, Any], wall: float, n: int
) -> dict[str, Any]:
    """Run the DuckDB job on the same files; its figures, and recpipe's ratio to it."""
    try:
        proc = subprocess.run(
            [python, __file__, "duckdb"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
    except subprocess.CalledProcessError as exc:
        return {"yardstick": {"engine": "duckdb", "error": f"{exc}: {exc.stderr[-2000:]}"}}
    except subprocess.TimeoutExpired as exc:
        return {"yardstick": {"engine": "duckdb", "error": str(exc)}}
    ys = json.loads(proc.stdout)
    ours = {k: summary[k] for k in ("input_records", "accepted", "duplicates", "quarantined_by_reason")}
    ys["counts_match"] = ys["counts"] == ours
    ratio = wall / ys["wall_s"]
    return {
        "yardstick": ys,
        "ratio_to_yardstick": round(ratio, 2),
        "yardstick_target": f"recpipe ingest of 10^6 events within {TARGET_RATIO:g}x of the DuckDB version",
        "meets_yardstick_target": (ratio <= TARGET_RATIO) if n >= 1_000_000 else None,
    }


def _lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _list(values: list[str]) -> str:
    """A SQL list of string literals."""
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _in(values: list[str]) -> str:
    """The right-hand side of ``x IN (...)``."""
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def duckdb_ingest(spec: dict[str, Any]) -> dict[str, Any]:
    """recpipe's ingest of one batch of JSONL files as DuckDB SQL into Parquet.

    The same rules as ``recpipe.events``: a record is malformed (not UTF-8, not JSON, not an
    object), missing a required field, of an unknown event type, with a bad or future timestamp,
    or with an invalid position/dwell/propensity or a served record (``list_run_id`` set) without
    the serving-log fields, in that order; the others are normalized,
    pseudonymized and deduplicated by event id (given or derived) within the batch, the first by
    file and line kept. Unlike recpipe it reads only uncompressed ``events/**/*.jsonl`` with
    the default column names, counts no late events, writes no per-file report and does not look
    up events stored by earlier batches (the bench's lake starts empty, so neither does recpipe's
    run). Writes bronze (every line, the quarantine), silver (partitioned by event date) and the
    items, then checks silver as recpipe's quality gate does. ``wall_s`` leaves out the start of
    Python and DuckDB, as recpipe's figure leaves out Spark's.
    """
    import duckdb

    t_start = time.perf_counter()
    out = Path(spec["out_dir"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    max_ts = now + dt.timedelta(seconds=spec["max_future_seconds"])
    ipad, opad = spec["hmac_pads"]
    fields, required = spec["fields"], spec["required"]
    con = duckdb.connect()
    con.execute(f"SET threads = {int(spec['threads'])}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE MACRO blank(x) AS x IS NULL OR trim(x) = ''")
    con.execute(
        f"""CREATE MACRO parse_ts(s) AS CASE
            WHEN regexp_matches(trim(s), {_lit(spec["int_re"])}) THEN epoch_ms(trim(s)::BIGINT)
            WHEN regexp_matches(trim(s), {_lit(spec["iso_re"])}) THEN try_cast(trim(s) AS TIMESTAMPTZ)::TIMESTAMP
        END"""
    )
    # HMAC-SHA256 from its pads, as transforms.pseudonymize computes it in Spark.
    con.execute(
        f"""CREATE MACRO pseudonym(u) AS 'p_' || substr(
            sha256(unhex('{opad}') || unhex(sha256(unhex('{ipad}') || encode(u)))), 1, 32)"""
    )
    timings: dict[str, float] = {}

    # 1. read + parse. read_blob, not read_text: a line that is not UTF-8 is that line's defect,
    # not the file's. BLOB -> VARCHAR escapes every byte that is not printable ASCII (a backslash
    # too) as \xNN, so splitting at the text '\x0A' finds exactly the newlines, and each part
    # cast back to BLOB is the line's bytes.
    t0 = time.perf_counter()
    files = _lit(str(Path(spec["raw_dir"]) / "events" / "**" / "*.jsonl"))
    con.execute(
        f"""CREATE TABLE lines AS
        SELECT source_file, line, part AS escaped,
               try(decode((CASE WHEN suffix(part, '\\x0D') THEN left(part, -4) ELSE part END)::BLOB)) AS text
        FROM (SELECT filename AS source_file, unnest(parts) AS part,
                     generate_subscripts(parts, 1) AS line, len(parts) AS n
              FROM (SELECT filename, string_split(content::VARCHAR, '\\x0A') AS parts FROM read_blob({files})))
        WHERE NOT (line = n AND part = '')"""
    )
    paths = _list([f"$.{f}" for f in fields if f != "is_history"])
    extracted = ", ".join(
        f"v[{i + 1}] AS {RAW_RENAMED.get(f, f)}" for i, f in enumerate(f for f in fields if f != "is_history")
    )
    etype = "lower(trim(event_type))"
    for alias, target in spec["aliases"].items():
        etype = f"CASE WHEN lower(trim(event_type)) = {_lit(alias)} THEN {_lit(target)} ELSE {etype} END"
    missing = ", ".join(f"CASE WHEN blank({f}) THEN '{f}' END" for f in required)
    min_ts = f"CAST({_lit(spec['min_ts'])} AS TIMESTAMPTZ)::TIMESTAMP"
    types = _in(spec["allowed_event_types"])
    con.execute(
        f"""CREATE TABLE classified AS
        WITH parsed AS (
            SELECT source_file, line, coalesce(text, escaped) AS raw, text, CASE
                WHEN text IS NULL THEN 'invalid UTF-8'
                WHEN NOT json_valid(text) THEN 'invalid JSON'
                WHEN json_type(text) <> 'OBJECT' THEN 'not a JSON object (' || lower(json_type(text)) || ')'
            END AS parse_error
            FROM lines
        ), fields AS (
            SELECT * EXCLUDE (v, h, text), {extracted},
                   CASE WHEN json_type(h) = 'BOOLEAN' THEN h::BOOLEAN END AS is_history
            FROM (SELECT *,
                         CASE WHEN parse_error IS NULL THEN json_extract_string(text, {paths}) END AS v,
                         CASE WHEN parse_error IS NULL THEN json_extract(text, '$.is_history') END AS h
                  FROM parsed)
        ), checked AS (
            SELECT *, {etype} AS event_type_norm, parse_ts(ts) AS ts_parsed,
                   concat_ws(',', {missing}) AS missing,
                   try_cast(trim(position) AS INTEGER) AS position_int,
                   try_cast(trim(dwell_ms) AS BIGINT) AS dwell_long,
                   try_cast(trim(propensity) AS DOUBLE) AS propensity_double,
                   concat_ws(',',
                       CASE WHEN position IS NOT NULL AND (position_int IS NULL OR position_int < 0)
                            THEN 'position' END,
                       CASE WHEN dwell_ms IS NOT NULL AND (dwell_long IS NULL OR dwell_long < 0)
                            THEN 'dwell_ms' END,
                       CASE WHEN propensity IS NOT NULL AND (propensity_double IS NULL
                            OR propensity_double <= 0 OR propensity_double > 1) THEN 'propensity' END
                   ) AS invalid,
                   NOT blank(list_run_id) AS served,
                   served AND event_type_norm = 'impression' AS served_imp,
                   concat_ws(',',
                       CASE WHEN served AND blank(request_id) THEN 'request_id' END,
                       CASE WHEN served_imp AND position IS NULL THEN 'position' END,
                       CASE WHEN served_imp AND blank(arm) THEN 'arm' END,
                       CASE WHEN served_imp AND propensity IS NULL THEN 'propensity' END
                   ) AS served_missing,
                   concat_ws('; ',
                       CASE WHEN invalid <> '' THEN 'invalid value in: ' || invalid END,
                       CASE WHEN served_missing <> '' THEN event_type_norm
                            || ' from a served list (list_run_id set) without: ' || served_missing END
                   ) AS invalid_detail
            FROM fields
        )
        SELECT *, CASE
                WHEN parse_error IS NOT NULL THEN 'malformed'
                WHEN missing <> '' THEN 'missing_field'
                WHEN event_type_norm NOT IN {types} THEN 'unknown_event_type'
                WHEN ts_parsed IS NULL OR ts_parsed < {min_ts} THEN 'bad_timestamp'
                WHEN ts_parsed > TIMESTAMP '{max_ts}' THEN 'future_timestamp'
                WHEN invalid_detail <> '' THEN 'invalid_field'
            END AS reason, CASE
                WHEN parse_error IS NOT NULL THEN parse_error
                WHEN missing <> '' THEN 'missing or empty: ' || missing
                WHEN event_type_norm NOT IN {types} THEN 'event_type=' || event_type
                WHEN ts_parsed IS NULL THEN 'unparseable ts=' || ts
                WHEN ts_parsed < {min_ts} THEN {_lit(f"ts before {spec['min_ts']}: ")} || ts
                WHEN ts_parsed > TIMESTAMP '{max_ts}' THEN 'ts in the future: ' || ts
                WHEN invalid_detail <> '' THEN invalid_detail
            END AS detail
        FROM checked"""
    )
    by_reason = dict(con.execute("SELECT reason, count(*) FROM classified GROUP BY reason").fetchall())
    timings["read_parse_s"] = time.perf_counter() - t0

    # 2. normalize + dedupe within the batch
    t0 = time.perf_counter()
    con.execute(
        f"""CREATE TABLE silver AS
        SELECT * EXCLUDE (source_file, line) FROM (
            SELECT CASE WHEN blank(event_id) THEN substr(sha256(concat_ws(chr(31), user_p, trim(item_id),
                        event_type_norm, epoch_us(ts_parsed)::VARCHAR, coalesce(trim(request_id), ''),
                        coalesce(position_int::VARCHAR, ''))), 1, 32)
                   ELSE trim(event_id) END AS event_id,
                   user_p AS user_id, trim(item_id) AS item_id,
                   event_type_norm AS event_type, ts_parsed AS event_ts,
                   CASE WHEN blank(session_id) THEN NULL ELSE trim(session_id) END AS session_id,
                   CASE WHEN blank(request_id) THEN NULL ELSE trim(request_id) END AS request_id,
                   position_int AS position, dwell_long AS dwell_ms,
                   lower(CASE WHEN blank(device) THEN NULL ELSE trim(device) END) AS device,
                   upper(CASE WHEN blank(country) THEN NULL ELSE trim(country) END) AS country,
                   propensity_double AS propensity, coalesce(is_history, false) AS is_history,
                   {_lit(spec["batch_id"])} AS batch_id, TIMESTAMP '{now}' AS ingested_at,
                   ts_parsed::DATE AS event_date,
                   CASE WHEN blank(list_run_id) THEN NULL ELSE trim(list_run_id) END AS list_run_id,
                   CASE WHEN blank(arm) THEN NULL ELSE trim(arm) END AS arm,
                   CASE WHEN blank(reason_code) THEN NULL ELSE trim(reason_code) END AS reason,
                   source_file, line
            FROM (SELECT *, pseudonym(trim(user_id)) AS user_p FROM classified WHERE reason IS NULL))
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_file, line) = 1"""
    )
    accepted = con.execute("SELECT count(*) FROM silver").fetchone()[0]
    timings["dedupe_s"] = time.perf_counter() - t0

    # 3. write
    t0 = time.perf_counter()
    batch = f"{_lit(spec['batch_id'])} AS batch_id"
    ingested = f"TIMESTAMP '{now}' AS ingested_at"
    con.execute(
        f"""COPY (SELECT {batch}, source_file, line, raw, {ingested} FROM classified)
        TO {_lit(str(out / "bronze_events_raw.parquet"))} (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT {batch}, source_file, line, raw, reason, detail, {ingested}
                  FROM classified WHERE reason IS NOT NULL)
        TO {_lit(str(out / "bronze_quarantine.parquet"))} (FORMAT parquet)"""
    )
    silver_dir = out / "silver_events"
    con.execute(f"COPY silver TO {_lit(str(silver_dir))} (FORMAT parquet, PARTITION_BY (event_date))")
    items = Path(spec["raw_dir"]) / "items.jsonl"
    if items.exists():
        con.execute(
            f"""COPY (SELECT DISTINCT ON (item_id) * REPLACE (trim(item_id) AS item_id)
                      FROM read_json({_lit(str(items))}, format = 'newline_delimited')
                      WHERE NOT blank(item_id))
            TO {_lit(str(out / "silver_items.parquet"))} (FORMAT parquet)"""
        )
    timings["write_s"] = time.perf_counter() - t0

    # 4. the quality gate's checks on what was written, in one aggregate
    t0 = time.perf_counter()
    not_null = ", ".join(
        f'count(*) FILTER ({c} IS NULL) AS "not_null({c})"'
        for c in ("event_id", "user_id", "item_id", "event_type", "event_ts", "event_date", "batch_id")
    )
    gate = con.execute(
        f"""SELECT count(*) - count(DISTINCT event_id) AS "unique(event_id)", {not_null},
               count(*) FILTER (event_type NOT IN {types}) AS "in_set(event_type)",
               count(*) FILTER (event_ts < {min_ts} OR event_ts > TIMESTAMP '{max_ts}') AS "between(event_ts)",
               count(*) FILTER (position < 0) AS "between(position)",
               count(*) FILTER (dwell_ms < 0) AS "between(dwell_ms)",
               count(*) FILTER (propensity <= 0 OR propensity > 1) AS "between(propensity)",
               count(*) FILTER (length(user_id) <> 34) AS "length(user_id)"
        FROM read_parquet({_lit(str(silver_dir / "**" / "*.parquet"))}, hive_partitioning = true)"""
    )
    names = [d[0] for d in gate.description]
    failed = [name for name, bad in zip(names, gate.fetchone()) if bad]
    timings["quality_gate_s"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start

    valid = by_reason.pop(None, 0)
    result = {
        "engine": "duckdb",
        "version": duckdb.__version__,
        "threads": spec["threads"],
        "wall_s": round(wall, 2),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "checks_failed": failed,
        "counts": {
            "input_records": valid + sum(by_reason.values()),
            "accepted": accepted,
            "duplicates": valid - accepted,
            "quarantined_by_reason": dict(sorted(by_reason.items())),
        },
    }
    if spec.get("recpipe_silver"):  # after the clock: the two silver tables, row by row
        theirs = f"SELECT {COMPARED_COLUMNS} FROM read_parquet({_list(spec['recpipe_silver'])})"
        ours = f"SELECT {COMPARED_COLUMNS} FROM silver"
        result["silver_rows_only_in_recpipe"] = con.execute(
            f"SELECT count(*) FROM ({theirs} EXCEPT ALL {ours})"
        ).fetchone()[0]
        result["silver_rows_only_in_duckdb"] = con.execute(
            f"SELECT count(*) FROM ({ours} EXCEPT ALL {theirs})"
        ).fetchone()[0]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["duckdb"], help="duckdb: run the yardstick job given as JSON on stdin")
    p.parse_args()
    print(json.dumps(duckdb_ingest(json.load(sys.stdin))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
