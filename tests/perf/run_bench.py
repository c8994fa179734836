"""`make bench`: run every benchmark module and write one JSON file per benchmark.

Usage: python tests/perf/run_bench.py --out bench-results [--only ingest,features] [--quick]
       [--ingest-sizes 1000000]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

BENCHES = ["ingest", "features", "train", "models", "position_bias", "recommend", "stream", "simulate"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench-results")
    p.add_argument("--only", help="comma-separated subset of " + ",".join(BENCHES))
    p.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    p.add_argument(
        "--ingest-sizes",
        type=lambda v: tuple(int(n) for n in v.split(",")),
        help="comma-separated event counts for the ingest bench (default 100000,1000000; --quick 20000)",
    )
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else BENCHES
    failed = 0
    for name in names:
        try:
            mod = importlib.import_module(f"tests.perf.bench_{name}")
        except ModuleNotFoundError as exc:
            print(f"bench {name}: not available ({exc})", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            kwargs = {}
            if name == "ingest" and (args.ingest_sizes or args.quick):
                kwargs["sizes"] = args.ingest_sizes or (20_000,)
            if name == "stream" and args.quick:
                kwargs.update(events=20_000, files=4, trigger_seconds=10, land_every=3.0)
            if name == "simulate" and args.quick:
                kwargs.update(
                    days=2,
                    overrides=(
                        "data.synthetic.events=20000",
                        "data.synthetic.days=6",
                        "simulate.users_per_day=200",
                    ),
                )
            result = mod.bench(out / "work", **kwargs)
            if hasattr(mod, "bench_mind") and not args.quick:
                result = {"synthetic": result, "mind": mod.bench_mind(out / "work-mind")}
        except Exception:
            traceback.print_exc()
            failed += 1
            result = {"benchmark": name, "error": traceback.format_exc(limit=3)}
        result["machine"] = {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        path = out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, default=str))
        print(f"bench {name}: wrote {path}")
        print(json.dumps(result, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
