"""The ``recpipe`` command: one subcommand per stage, each calling one ``run`` function.

Every command takes ``--conf FILE`` and repeatable ``--set key=value`` overrides, logs progress
to stderr, and prints one JSON summary line on stdout. Errors exit non-zero with a one-line reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from recpipe import faults
from recpipe.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("recpipe")

DEFAULT_CONF = os.environ.get("RECPIPE_CONF", "conf/local.yaml")


def _date(text: str) -> dt.date:
    from recpipe.stages.base import parse_run_date

    try:
        return parse_run_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", default=DEFAULT_CONF, help=f"YAML config file (default: {DEFAULT_CONF})")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lake.root=/tmp/lake (repeatable)",
    )
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="warnings and errors only, no Spark progress bar (the JSON line is printed as always)",
    )


def _force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} even when its row count falls by more than the configured max_drop_share "
        "against what is stored (an empty result is refused regardless)",
    )


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.conf, args.overrides)


def _session(cfg: Config, stage: str) -> SparkSession:
    from recpipe.spark import build_session

    return build_session(cfg, stage)


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.datasets.synthetic import generate

    syn = (cfg := _load(args)).data.synthetic
    events = syn.events if args.events is None else args.events
    seed = syn.seed if args.seed is None else args.seed
    start = args.start or syn.start
    days = args.days or syn.days
    out = args.out or cfg.data.raw_dir
    report = generate(
        out,
        events=events,
        seed=seed,
        start=start,
        days=days,
        dirty=not args.clean,
        progress=lambda m: log.info("generate: %s", m),
    )
    return report.to_dict()


def cmd_import(args: argparse.Namespace) -> dict[str, Any]:
    if args.source_kind == "mind":
        from recpipe.datasets.mind import import_mind

        return import_mind(args.source, args.out, overwrite=args.overwrite)
    from recpipe.datasets.movielens import import_movielens

    return import_movielens(args.source, args.out, overwrite=args.overwrite)


def _stage_args(p: argparse.ArgumentParser, date_help: str) -> None:
    """``--date`` (the run date D of the stage's date plan) and ``--rerun``, for every stage."""
    p.add_argument("--date", type=_date, help=f"run date D, YYYY-MM-DD: {date_help}")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run even when an earlier attempt with the same inputs and config is done "
        "(skip-if-done) or the date plan says there is nothing to do",
    )


def _run_stage(args: argparse.Namespace, name: str, **options: Any) -> dict[str, Any]:
    """A stage command through the stage contract (recpipe.stages); ``options`` override the plan."""
    from recpipe.stages.runner import run_stage

    options["force"] = getattr(args, "force", False)
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    res = run_stage(_load(args), name, args.date, given, rerun=args.rerun)
    return stage_output(res)


def stage_output(res: Any) -> dict[str, Any]:
    """The JSON line of a stage command: the body's summary plus the attempt under ``stage``."""
    attempt = {k: v for k, v in res.to_dict().items() if k != "summary"}
    return {"job": res.stage, **res.summary, "stage": attempt}


def cmd_ingest(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "ingest", input=args.input, batch_id=args.batch_id)


def cmd_stream(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.events.stream import run_stream

    cfg = _load(args)
    spark = _session(cfg, "stream")
    return run_stream(cfg, spark, args.input, once=args.once, max_batches=args.max_batches)


def cmd_features(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "features", start=args.start)


def _timestamp(text: str) -> dt.datetime:
    from recpipe.config import parse_ts

    try:
        return parse_ts(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timestamp {text!r}: expected ISO 8601, e.g. 2026-10-14T00:00:00Z"
        ) from None


def cmd_segments(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.features.segments import build_segments
    from recpipe.lake import open_lake

    cfg = _load(args)
    spark = _session(cfg, "segments")
    out = build_segments(cfg, spark, open_lake(cfg, spark), as_of=args.as_of, force=args.force)
    if not args.json:
        width = max([len(n) for n in out["segments"]] + [7])
        print(f"{'segment':<{width}}  {'kind':<7}  {'users':>8}  label", file=sys.stderr)
        for name, s in out["segments"].items():
            print(f"{name:<{width}}  {s['kind']:<7}  {s['users']:>8}  {s['label']}", file=sys.stderr)
        if out["clusters_skipped"]:
            print(f"clusters skipped: {out['clusters_skipped']}", file=sys.stderr)
    return out


def _segments_description() -> str:
    from recpipe.features.segment_rules import FIELDS

    fields = "\n".join(f"  {name:<22} {meaning}" for name, meaning in FIELDS.items())
    return f"""Rebuild gold.user_segments from gold.user_profiles (written by `recpipe stream`): one row per
user and segment (user_id, segment, kind rule|cluster, label, as_of, run_id); the whole table is
replaced. Prints each segment's size on stderr and one JSON line.

rules (segments.rules: name -> rule): FIELD OP NUMBER clauses joined with `and`;
OP is one of >= > <= < == !=. Fields:
{fields}
  Keys are matched as stored; quote a key with other characters than letters, digits, _ - &:
  interest."food & drink" >= 0.2. Example:
    segments:
      rules:
        sports_fans: "interest.sports >= 0.3"
        dormant: "days_since_last_seen > 14"
        heavy_readers: "events.read >= 20 and days_since_last_seen <= 7"

clusters (segments.clusters > 0): KMeans (segments.seed) on each user's interest shares over the
segments.cluster_categories largest categories; cluster_0 is the largest, labelled by its top
categories (sports+tech). Users without interests get no cluster; a source without categories
gets none (clusters_skipped says why). A user can be in several rule segments and one cluster.

An empty result never replaces stored segments while profiles exist (unless --force).
"""


def cmd_examples(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "examples", start=args.start, end=args.end, click_only=args.click_only)


def cmd_tables(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.lake import open_lake
    from recpipe.lake.tables import describe_tables

    cfg = _load(args)
    spark = _session(cfg, "tables")
    rows = describe_tables(open_lake(cfg, spark))
    if not args.json:
        width = max([len(r["table"]) for r in rows] + [5])
        print(f"{'table':<{width}}  {'version':>7}  {'rows':>10}  last operation", file=sys.stderr)
        for r in rows:
            print(
                f"{r['table']:<{width}}  {r['version']:>7}  {r['rows']:>10}  {r['last_operation']} "
                f"({r['last_commit']})",
                file=sys.stderr,
            )
    return {"tables": rows}


def cmd_recommend(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "recommend", users=args.users)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "train", run_id=args.run_id, examples_version=args.examples_version)


def _ingest_description() -> str:
    from recpipe.constants import RAW_FIELDS, REQUIRED_RAW_FIELDS
    from recpipe.events.ingest import FORMAT_EXTENSIONS

    formats = "; ".join(f"{k}: {', '.join(v)}" for k, v in FORMAT_EXTENSIONS.items())
    return f"""Ingest one batch of raw event files into bronze.events_raw, bronze.quarantine and silver.events
(items.jsonl at the folder root -> silver.items). Prints the reconciliation summary as JSON.

formats (ingest.format; .gz files are gunzipped while reading):
  {formats}
  Any other file under the folder (other extension, empty, corrupt gzip) stops the batch before
  anything is written (ingest.unknown_files: fail), or is skipped and listed in the summary (skip).

column mapping (ingest.column_mapping: canonical field -> spec; unmapped fields keep their name):
  fields:   {", ".join(RAW_FIELDS)}
  required: {", ".join(REQUIRED_RAW_FIELDS)}
  specs:    NAME                         the source column (CSV/Parquet) or JSON key NAME
            {{column: NAME}}               the same
            {{column: NAME, unit: ms}}     ts only: epoch number in s, ms or us
            {{const: VALUE}}               the same value for every record
  Two fields may name the same source column (e.g. a session id as request id).

A batch where fewer than ingest.min_accepted_share of the input records pass validation fails
(exit 2) with the top quarantine reasons; nothing is published and the attempt is in ops.runs.

example (a click log CSV: session,user,article,time_ms):
  ingest:
    format: csv
    column_mapping:
      user_id: user
      item_id: article
      session_id: session
      request_id: session
      event_type: {{const: click}}
      ts: {{column: time_ms, unit: ms}}
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _stream_description() -> str:
    return """Spark Structured Streaming over the landing folder: each micro-batch's new files are
ingested exactly as `recpipe ingest` ingests a batch (same parsing, quarantine reasons, pseudonyms,
dedupe against stored events, quality gate, ops.runs row), then gold.user_profiles is merged from
the events the micro-batch stored (stream.update_profiles).

  recpipe stream --once                 every file not ingested yet, then stop (a scheduled catch-up)
  recpipe stream                        a micro-batch every stream.trigger_seconds until SIGTERM
  recpipe stream --max-batches 3        ... stop after 3 micro-batches that had files

The checkpoint (stream.checkpoint_dir, default <lake.root>/_checkpoints/stream/<stream.name>)
remembers which files were ingested; a killed stream restarted with the same checkpoint replays
its unfinished micro-batch with the same files and batch id, so nothing is lost or stored twice.
Land files atomically (write them as .name or _name, then rename): names starting with . or _ are
skipped, and a file is read once, when it is first seen. items.jsonl at the folder's root is
upserted with the first micro-batch after it changed. Ends with one JSON line: the counts of
`recpipe ingest` summed over the run's micro-batches, and each micro-batch's under "batches".
"""


def _json_option(p: argparse.ArgumentParser) -> None:
    """``--json``, for the commands that also print a table on stderr."""
    p.add_argument("--json", action="store_true", help="only the JSON line, no table on stderr")


def _add_generate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe generate``: write synthetic media event logs."""
    p = sub.add_parser("generate", help="write synthetic media event logs (the embedded default data)")
    _common(p)
    p.add_argument("--out", help="output folder (default: data.raw_dir of the config)")
    p.add_argument("--events", type=int, help="approximate number of clean events (default: config)")
    p.add_argument("--seed", type=int, help="random seed (default: config)")
    p.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (default: config)")
    p.add_argument("--days", type=int, help="number of days (default: config)")
    p.add_argument("--clean", action="store_true", help="no dirt (duplicates, malformed lines, ...)")
    p.set_defaults(func=cmd_generate)


def _add_import_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe import``: convert a real data set (MIND, MovieLens) into raw event files."""
    p = sub.add_parser("import", help="convert a real data set (MIND, MovieLens) into raw event files")
    _common(p)
    p.add_argument("source_kind", choices=["mind", "movielens"])
    p.add_argument("--source", required=True, help="folder of the original data set")
    p.add_argument("--out", required=True, help="output folder of raw event files")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    p.set_defaults(func=cmd_import)


def _add_ingest_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe ingest``: raw event files into the bronze and silver tables."""
    p = sub.add_parser(
        "ingest",
        help="raw event files -> bronze/silver Delta tables (idempotent per batch)",
        description=_ingest_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--input",
        help="folder with events/YYYY-MM-DD/HH.<ext> (or event files directly) and optionally "
        "items.jsonl (default: data.raw_dir of the config)",
    )
    p.add_argument(
        "--batch-id",
        help="ingest the whole --input folder as this one batch (default: one batch per day folder, "
        "each id derived from the folder's files)",
    )
    _stage_args(p, "the day folders events/YYYY-MM-DD/ dated before D (default: today, UTC)")
    p.set_defaults(func=cmd_ingest)


def _add_stream_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe stream``: Structured Streaming ingest of the landing folder."""
    p = sub.add_parser(
        "stream",
        help="Structured Streaming ingest of the landing folder (+ gold.user_profiles), --once to catch up",
        description=_stream_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--input",
        help="the landing folder: events/**/<file>.<ext> (or event files directly) and optionally "
        "items.jsonl (default: data.raw_dir of the config)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="ingest every file not ingested yet, then stop (trigger availableNow): scheduled catch-up",
    )
    p.add_argument(
        "--max-batches",
        type=_positive_int,
        metavar="N",
        help="continuous mode: stop after N micro-batches that had files (default: run until SIGTERM/Ctrl-C)",
    )
    p.set_defaults(func=cmd_stream)


def _add_features_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe features``: the gold feature tables as of a run date."""
    p = sub.add_parser(
        "features", help="silver tables -> gold.item_features, gold.user_features as of --date"
    )
    _common(p)
    _stage_args(
        p, "features as of D, only events before its 00:00 UTC (default: the day after the latest event)"
    )
    p.add_argument(
        "--start",
        type=_date,
        help="also every as-of date from START to D, in one pass: the dates a range of training "
        "examples reads (default: the examples' window of D, [D - examples.window_days, D - 1]; "
        "a backtest: every event date)",
    )
    _force(p, "the dates' feature partitions (lake.max_drop_share)")
    p.set_defaults(func=cmd_features)


def _add_examples_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe examples``: the training examples of a date range."""
    p = sub.add_parser(
        "examples", help="impressions + point-in-time features -> gold.training_examples (+ feature spec)"
    )
    _common(p)
    _stage_args(
        p,
        "the impressions of [D - examples.window_days, D - 1] (default: the day after the latest event)",
    )
    p.add_argument("--start", type=_date, help="first impression date, YYYY-MM-DD (overrides the plan)")
    p.add_argument("--end", type=_date, help="last impression date, inclusive (overrides the plan)")
    p.add_argument(
        "--click-only",
        action="store_true",
        help="treat the source as click-only (sampled negatives); default: detected from the data",
    )
    _force(p, "the range's example and feature partitions (lake.max_drop_share)")
    p.set_defaults(func=cmd_examples)


def _add_segments_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe segments``: rule and KMeans user segments."""
    p = sub.add_parser(
        "segments",
        help="rule and KMeans segments of gold.user_profiles -> gold.user_segments; prints their sizes",
        description=_segments_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--as-of",
        type=_timestamp,
        metavar="TS",
        help="the time days_since_last_seen and interest_weight are measured at, ISO 8601 "
        "(naive = UTC; default: the latest last_seen in gold.user_profiles)",
    )
    p.add_argument("--force", action="store_true", help="write an empty result over stored segments")
    _json_option(p)
    p.set_defaults(func=cmd_segments)


def _add_tables_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe tables``: list the lake's tables."""
    p = sub.add_parser("tables", help="list the lake's tables with version, rows and last operation")
    _common(p)
    _json_option(p)
    p.set_defaults(func=cmd_tables)


def _add_recommend_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe recommend``: publish the lists of a run date."""
    p = sub.add_parser(
        "recommend",
        help="candidates + ranking + re-ranking -> gold.recommendations for a run date (atomic, idempotent)",
    )
    _common(p)
    _stage_args(
        p, "the lists of D from events before its 00:00 UTC (default: the day after the latest event)"
    )
    p.add_argument(
        "--users",
        help="optional CSV (header) or .parquet of user_id[,country,device] to recommend for in "
        "addition to the users active in the last 28 days (users without events get cold-start lists)",
    )
    _force(p, "the published lists (recommend.max_drop_share, against the last publish)")
    p.set_defaults(func=cmd_recommend)


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe train``: train the CTR model."""
    p = sub.add_parser(
        "train", help="Horovod training of the CTR model on gold.training_examples -> ops.model_registry"
    )
    _common(p)
    _stage_args(
        p,
        "trains unless a model was trained for one of the train.every_days - 1 days before D "
        "(default: the day after the latest event)",
    )
    p.add_argument(
        "--run-id", help="run id (always trains); an existing run id resumes from its last checkpoint"
    )
    p.add_argument(
        "--examples-version", type=int, help="examples table version (always trains; default: the day's)"
    )
    p.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe evaluate``: offline metrics of the published lists."""
    p = sub.add_parser(
        "evaluate", help="offline metrics of the published lists vs. popularity and ALS -> ops.evaluations"
    )
    _common(p)
    _stage_args(
        p,
        "evaluates the lists published on D - evaluate.horizon_days against the clicks since "
        "(default: the date that evaluates the latest published lists)",
    )
    p.set_defaults(func=cmd_evaluate)


def _add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe simulate``: the closed loop on the synthetic world."""
    p = sub.add_parser(
        "simulate",
        help="closed loop on the synthetic world: users served by arm, clicks, daily runs, online CTR and OPE",
        description=SIMULATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--days", type=int, required=True, help="days to simulate (>= 1)")
    p.add_argument(
        "--start",
        type=_date,
        help="first simulated day, YYYY-MM-DD (default: the day after the generated logs)",
    )
    _json_option(p)
    p.set_defaults(func=cmd_simulate)


def _add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe status``: the stages by run date from ops.runs."""
    p = sub.add_parser("status", help="stages by run date from ops.runs: status, duration, counts, reasons")
    _common(p)
    p.add_argument("--date", type=_date, help="last run date shown (default: the latest in ops.runs)")
    p.add_argument("--days", type=int, default=7, help="number of run dates shown (default: 7)")
    _json_option(p)
    p.set_defaults(func=cmd_status)


def _add_forget_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe forget``: delete one user's rows (deletion on request)."""
    p = sub.add_parser("forget", help="delete one user's rows from every table (deletion on request)")
    _common(p)
    p.add_argument("--user-id", required=True, help="the user's id as it appears in the raw logs")
    p.add_argument(
        "--vacuum",
        action="store_true",
        help="also erase now: vacuum (retention 0) and expire the log of every table with user ids, "
        "so no file of the tables holds the user (ends time travel before the request)",
    )
    p.set_defaults(func=cmd_forget)


def _add_vacuum_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe vacuum``: remove data files no table version needs."""
    p = sub.add_parser("vacuum", help="remove data files no table version needs (older than retention)")
    _common(p)
    p.add_argument("--retention-hours", type=float, help="default: lake.vacuum_retention_hours")
    p.add_argument("--dry-run", action="store_true", help="only list the files")
    p.set_defaults(func=cmd_vacuum)


def _add_report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``recpipe report``: list (and re-render) the HTML/JSON reports."""
    p = sub.add_parser(
        "report",
        help="list the HTML/JSON reports of evaluate, train, ingest and simulate; --render rebuilds the pages",
        description=REPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--date",
        type=_date,
        help="only the reports of this run date, YYYY-MM-DD (evaluation: the lists' date; train: "
        "daily run ids start with the date; ingest: the batch's day folder; simulation: its first day)",
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="re-render every listed page from its JSON (after an upgrade, or when a page is missing)",
    )
    _json_option(p)
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recpipe",
        description="Batch recommendation pipeline on Spark + Delta Lake. Each command prints one JSON "
        "summary line on stdout; progress goes to stderr.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (  # the order of the commands in --help
        _add_generate_parser,
        _add_import_parser,
        _add_ingest_parser,
        _add_stream_parser,
        _add_features_parser,
        _add_examples_parser,
        _add_segments_parser,
        _add_tables_parser,
        _add_recommend_parser,
        _add_train_parser,
        _add_evaluate_parser,
        _add_simulate_parser,
        _add_status_parser,
        _add_forget_parser,
        _add_vacuum_parser,
        _add_report_parser,
    ):
        add_parser(sub)

    from recpipe.pipeline import add_run_parser

    add_run_parser(sub, _common, _date)
    return parser


def cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.simulation.loop import run_simulation

    if args.days < 1:
        raise ValueError(f"--days must be >= 1, got {args.days}")
    cfg = _load(args)
    out = run_simulation(cfg, _session(cfg, "simulate"), args.days, args.start)
    if not args.json:
        print(
            f"\n=== recpipe simulate: {out['days_simulated']} days from {out['start']} ===", file=sys.stderr
        )
        for arm, m in out["arms"].items():
            print(
                f"  {arm:<11} ctr {m['ctr']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]  "
                f"clicks/list {m['clicks_per_list']:.3f}  lists {m['lists']:,}",
                file=sys.stderr,
            )
        lift = out.get("lift_over_popularity")
        if lift:
            print(
                f"  recpipe vs popularity: ctr lift {lift['lift']:+.1%} [{lift['ci_low']:+.1%}, {lift['ci_high']:+.1%}]",
                file=sys.stderr,
            )
        o = out["ope_summary"]
        if o["days_checked"]:
            print(
                f"  next-day OPE: mean abs error {o['mean_abs_error']:.3f} clicks/list, CI contains the "
                f"online value on {o['ci_contains_share']:.0%} of {o['days_checked']} days",
                file=sys.stderr,
            )
        if out.get("report_html") or out.get("report_path"):
            print(f"  report: {out.get('report_html') or out.get('report_path')}", file=sys.stderr)
    return out


SIMULATE_DESCRIPTION = """Closed loop on the synthetic world (data.source: synthetic). The generated logs are the
history; each simulated day D:
  1. new items are published (simulate.new_items_per_day) and interests drift (simulate.drift_per_day);
  2. about simulate.users_per_day users arrive; each is in one arm for good (a stable hash of the
     user id and simulate.seed, cut by simulate.arms) and is shown that arm's list:
       recpipe     the list published for D (gold.recommendations; users without one get the
                   popularity list, counted as fallback_lists)
       previous    (opt-in) the same candidates ranked by the model promoted before the one
                   behind D's lists: what the last retrain is worth, e.g.
                   --set 'simulate.arms={recpipe: 0.4, previous: 0.2, popularity: 0.2, random: 0.2}'
       popularity  the most popular allowed items the user has not consumed
       random      allowed items drawn uniformly (exact propensities)
     clicks come from the world's true click model with its position bias; the impressions and
     clicks land in <raw_dir>/events/D/ with the serving-log contract's fields;
  3. the daily plan of D + 1 (ingest .. recommend, as `recpipe run --date`) learns from them and
     publishes the next lists (training every train.every_days);
  4. the off-policy estimate of the D + 1 lists is made from D's recpipe logs and checked against
     their online value the next day.
The command can be run again: served days and finished stages are reused. Ends with one JSON line:
arms (per arm over the run: ctr, ci_low, ci_high, clicks_per_list, impressions, lists), days (the
same per day, the ope estimate with its CI for the next day's lists and its observed value), the
lift of recpipe over popularity (and over previous) with its CI, and ope_summary. <raw_dir>/_simulation/ keeps the
served slots of each day and the summary; the reports folder gets simulation-<start>.json and its
HTML page (report_path, report_html; see `recpipe report`).
"""


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    return _run_stage(args, "evaluate")


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.lake import open_lake
    from recpipe.stages.status import format_status, stage_status

    if args.days < 1:
        raise ValueError(f"--days must be >= 1, got {args.days}")
    cfg = _load(args)
    report = stage_status(open_lake(cfg, _session(cfg, "status")), args.date, args.days)
    if not args.json:
        print(format_status(report), file=sys.stderr)
    return report


REPORT_DESCRIPTION = """List the reports in the reports folder (evaluate.report_dir, default
<paths.artifacts>/reports = <lake.root>/_artifacts/reports) and optionally rebuild their pages.

Each report is a JSON file and a self-contained HTML page beside it (figures embedded, no server,
no network): open the .html in any browser.
  evaluation-<date>.json/.html  `recpipe evaluate`: ranker AUC, NDCG/recall/hit rate/MRR by policy
                                and user segment, coverage/diversity/novelty, slots per reason,
                                expected clicks (synthetic data) and off-policy estimates
  train-<run id>.json/.html     `recpipe train`: loss, validation AUC/logloss per epoch, samples/s,
                                test AUC against the popularity and oracle baselines
  ingest-<batch id>.json/.html  `recpipe ingest`: records accepted/duplicate/quarantined/late, by
                                quarantine reason and by file
  simulation-<start>.json/.html `recpipe simulate`: online CTR by arm over days, recpipe's CTR lift
                                over popularity by day, next-day OPE against the online value

The pages are rendered from the JSON alone: --render rebuilds them (a page that fails is listed
with its error; exit 0). Prints one JSON line: {"job": "report", "reports": [...], ...}.

examples:
  recpipe report                         # list every report (by kind, then name)
  recpipe report --date 2026-10-12       # that run date's reports
  recpipe report --render                # rebuild every HTML page from its JSON
"""


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.reports.store import list_and_render

    cfg = _load(args)
    date = args.date.isoformat() if args.date else None
    out = list_and_render(cfg.artifacts_dir("reports"), date, args.render)
    if not args.json:
        if not out["reports"]:
            print(f"no reports in {out['folder']}" + (f" for {date}" if date else ""), file=sys.stderr)
        for r in out["reports"]:
            page = r["html"] or "(no page: recpipe report --render)"
            err = f"  ERROR {r['error']}" if "error" in r else ""
            print(f"{r['kind']:<10}  {r['date'] or '-':<10}  {page}{err}", file=sys.stderr)
    return out


def cmd_forget(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.privacy import forget_user

    cfg = _load(args)
    return forget_user(cfg, _session(cfg, "forget"), args.user_id, vacuum=args.vacuum)


def cmd_vacuum(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.lake import open_lake

    cfg = _load(args)
    lake = open_lake(cfg, _session(cfg, "vacuum"))
    hours = cfg.lake.vacuum_retention_hours if args.retention_hours is None else args.retention_hours
    removed = {t: len(lake.vacuum(t, hours, dry_run=args.dry_run)) for t in lake.list_tables()}
    return {"job": "vacuum", "retention_hours": hours, "dry_run": args.dry_run, "files_removed": removed}


class _Py4jResend(logging.Filter):
    """py4j logs a command it resent on a fresh connection (a pooled connection to the JVM found
    closed: Horovod starts its Spark job from a new thread at every training start) through the
    root logger, at INFO with two tracebacks. The command succeeded: nothing unless ``--verbose``,
    then one line."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or f"{os.sep}py4j{os.sep}" not in record.pathname:
            return True
        if not self.verbose:
            return False
        reason = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = f"py4j: {record.getMessage()} ({reason}); resent", ()
        record.exc_info, record.exc_text = None, None
        return True


def _setup_logging(args: argparse.Namespace) -> None:
    """Python logging for ``-v``/``-q``; ``--quiet`` also turns the Spark progress bar off."""
    quiet = getattr(args, "quiet", False)
    level = logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("py4j", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Py4jResend(args.verbose))
    if quiet and hasattr(args, "overrides"):
        args.overrides = [*args.overrides, "spark.show_progress=false"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    t0 = time.perf_counter()
    try:
        faults.enter(args.command)  # RECPIPE_FAULT=<command>:<point> crash tests
        result = args.func(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f"recpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        result.setdefault("elapsed_s", round(time.perf_counter() - t0, 3))
        print(json.dumps(result, default=str))
    return 0


def run_stage(stage: str, argv: list[str] | None = None) -> int:
    """Entry point of ``jobs/<stage>.py`` (spark-submit): ``recpipe <stage> ...``."""
    return main([stage, *(sys.argv[1:] if argv is None else argv)])
