"""Closed-loop benchmark (issue #14): `recpipe simulate --days 14` on the embedded default world.

Runs the command in its own process on a fresh landing folder and lake (``conf/local.yaml``: the
200k-event world, arms recpipe 50% / popularity 25% / random 25%, training every day) and keeps
from its JSON line what a later run is compared by:

- ``lift_over_popularity``: recpipe's online CTR lift over popularity with its CI, over the run,
  and ``lift_by_day`` (does it grow or hold as days pass);
- ``arms``: per arm ctr, ci_low, ci_high, clicks_per_list, expected_clicks_per_list, impressions;
- ``ope``: the next-day estimate's mean absolute error against the online value, the share of
  days whose CI contains it, and each day's (estimate, CI, observed);
- ``seconds_per_day``: wall time per simulated day (serving + the daily plan).

Usage: python tests/perf/bench_simulate.py [--days 14] [--out bench-results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(out_dir: Path, days: int = 14, overrides: tuple[str, ...] = ()) -> dict:
    work = Path(out_dir) / "simulate"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [
        str(Path(sys.executable).with_name("recpipe")),
        "simulate",
        "--days",
        str(days),
        "--json",
        "--set",
        f"lake.root={work / 'lake'}",
        "--set",
        f"data.raw_dir={work / 'raw'}",
    ]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYSPARK_PYTHON": sys.executable}
    with open(work / "simulate.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    if proc.returncode != 0:
        tail = (work / "simulate.log").read_text().splitlines()[-5:]
        raise RuntimeError(f"recpipe simulate exited {proc.returncode}: {' | '.join(tail)}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    keep = ("ctr", "ci_low", "ci_high", "clicks_per_list", "expected_clicks_per_list", "impressions", "lists")
    checked = [d for d in out["days"] if "observed" in d["ope"]]
    return {
        "benchmark": "simulate",
        "days": days,
        "overrides": list(overrides),
        "arm_shares": out["arm_shares"],
        "arms": {a: {k: m.get(k) for k in keep} for a, m in out["arms"].items()},
        "lift_over_popularity": out["lift_over_popularity"],
        "lift_by_day": [{"date": d["date"], **(d["lift_over_popularity"] or {})} for d in out["days"]],
        "ope": {
            **out["ope_summary"],
            "by_day": [
                {
                    "estimate_date": d["date"],
                    **{
                        k: d["ope"].get(k)
                        for k in ("value", "ci_low", "ci_high", "observed", "ci_contains_observed")
                    },
                }
                for d in checked
            ],
        },
        "seconds_per_day": out["seconds_per_day"],
        "total_s": out["duration_s"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--out", default="bench-results")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = bench(out / "work", days=args.days, overrides=tuple(args.overrides))
    (out / "simulate.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
