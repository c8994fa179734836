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
from typing import Any

from recpipe import faults
from recpipe.config import Config, ConfigError, load_config

log = logging.getLogger("recpipe")

DEFAULT_CONF = os.environ.get("RECPIPE_CONF", "conf/local.yaml")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


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
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.conf, args.overrides)


def _session(cfg: Config, stage: str):
    from recpipe.spark import build_session

    return build_session(cfg, stage)


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.datasets.synthetic import generate

    syn = (cfg := _load(args)).data.synthetic
    events = syn.events if args.events is None else args.events
    seed = syn.seed if args.seed is None else args.seed
    start = args.start or dt.date.fromisoformat(syn.start)
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


def cmd_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.events.ingest import run_ingest

    cfg = _load(args)
    spark = _session(cfg, "ingest")
    return run_ingest(cfg, spark, input_dir=args.input, batch_id=args.batch_id, date=args.date)


def cmd_features(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.features.build import run_features

    cfg = _load(args)
    spark = _session(cfg, "features")
    return run_features(cfg, spark, as_of=args.date)


def cmd_examples(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.features.examples import run_examples

    cfg = _load(args)
    spark = _session(cfg, "examples")
    return run_examples(cfg, spark, args.start, args.end, click_only=True if args.click_only else None)


def cmd_tables(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.lake import open_lake
    from recpipe.tables import describe_tables

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
    from recpipe.lake import open_lake
    from recpipe.scoring.run import run_recommend

    cfg = _load(args)
    spark = _session(cfg, "recommend")
    extra = None
    if args.users:
        reader = spark.read.option("header", True)
        extra = reader.parquet(args.users) if args.users.endswith(".parquet") else reader.csv(args.users)
    return run_recommend(cfg, spark, run_date=args.date, extra_users=extra, lake=open_lake(cfg, spark))


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.model.train import run_train

    cfg = _load(args)
    spark = _session(cfg, "train")
    return run_train(cfg, spark, run_id=args.run_id, examples_version=args.examples_version)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recpipe",
        description="Batch recommendation pipeline on Spark + Delta Lake. Each command prints one JSON "
        "summary line on stdout; progress goes to stderr.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="write synthetic media event logs (the embedded default data)")
    _common(p)
    p.add_argument("--out", help="output folder (default: data.raw_dir of the config)")
    p.add_argument("--events", type=int, help="approximate number of clean events (default: config)")
    p.add_argument("--seed", type=int, help="random seed (default: config)")
    p.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (default: config)")
    p.add_argument("--days", type=int, help="number of days (default: config)")
    p.add_argument("--clean", action="store_true", help="no dirt (duplicates, malformed lines, ...)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("import", help="convert a real data set (MIND, MovieLens) into raw event files")
    _common(p)
    p.add_argument("source_kind", choices=["mind", "movielens"])
    p.add_argument("--source", required=True, help="folder of the original data set")
    p.add_argument("--out", required=True, help="output folder of raw event files")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier import in --out")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("ingest", help="raw event files -> bronze/silver Delta tables (idempotent per batch)")
    _common(p)
    p.add_argument(
        "--input",
        help="folder with events/YYYY-MM-DD/HH.jsonl and items.jsonl (default: data.raw_dir of the config)",
    )
    p.add_argument("--batch-id", help="batch id (default: derived from the folder and its files)")
    p.add_argument("--date", type=_date, help="only ingest events/<date>/")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "features", help="silver tables -> gold.item_features, gold.user_features as of --date"
    )
    _common(p)
    p.add_argument("--date", type=_date, required=True, help="as-of date: only events before its 00:00 UTC")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser(
        "examples", help="impressions + point-in-time features -> gold.training_examples (+ feature spec)"
    )
    _common(p)
    p.add_argument("--start", type=_date, required=True, help="first impression date, YYYY-MM-DD")
    p.add_argument("--end", type=_date, required=True, help="last impression date (inclusive), YYYY-MM-DD")
    p.add_argument(
        "--click-only",
        action="store_true",
        help="treat the source as click-only (sampled negatives); default: detected from the data",
    )
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("tables", help="list the lake's tables with version, rows and last operation")
    _common(p)
    p.add_argument("--json", action="store_true", help="only the JSON line, no table on stderr")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser(
        "recommend",
        help="candidates + ranking + re-ranking -> gold.recommendations for a run date (atomic, idempotent)",
    )
    _common(p)
    p.add_argument(
        "--date",
        type=_date,
        help="run date, YYYY-MM-DD: uses events before its 00:00 UTC "
        "(default: the day after the latest event)",
    )
    p.add_argument(
        "--users",
        help="optional CSV (header) or .parquet of user_id[,country,device] to recommend for in "
        "addition to the users active in the last 28 days (users without events get cold-start lists)",
    )
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser(
        "train", help="Horovod training of the CTR model on gold.training_examples -> ops.model_registry"
    )
    _common(p)
    p.add_argument("--run-id", help="run id; an existing run id resumes from its last checkpoint")
    p.add_argument("--examples-version", type=int, help="examples table version (default: latest)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="offline metrics of the published lists vs. popularity and ALS -> ops.evaluations"
    )
    _common(p)
    p.add_argument("--date", type=_date, help="run date of the lists (default: the latest published)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("forget", help="delete one user's rows from every table (deletion on request)")
    _common(p)
    p.add_argument("--user-id", required=True, help="the user's id as it appears in the raw logs")
    p.add_argument(
        "--vacuum",
        action="store_true",
        help="also vacuum the touched tables now (erases the old files; ends time travel)",
    )
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("vacuum", help="remove data files no table version needs (older than retention)")
    _common(p)
    p.add_argument("--retention-hours", type=float, help="default: lake.vacuum_retention_hours")
    p.add_argument("--dry-run", action="store_true", help="only list the files")
    p.set_defaults(func=cmd_vacuum)

    from recpipe.pipeline import add_run_parser

    add_run_parser(sub, _common)
    return parser


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from recpipe.evaluation.run import run_evaluate

    cfg = _load(args)
    return run_evaluate(cfg, _session(cfg, "evaluate"), args.date)


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
