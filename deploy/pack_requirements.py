"""Print the pinned requirements of the packed environment (``deploy/spark-submit.sh``).

Walks the dependency closure of the installed ``recpipe`` (with the given extras) in the running
interpreter's environment and prints ``name==version`` for every distribution, so the packed
environment holds exactly the versions that were tested in ``.venv`` and nothing from the dev
extras. Excluded names (default: pyspark, which the cluster's Spark provides) are left out.

Usage: python deploy/pack_requirements.py [--extras train,eval] [--exclude pyspark]
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Requirement names another installed distribution provides: tf-keras requires `tensorflow`, which
# `tensorflow-cpu` (a requirement of recpipe[train]) provides; deploy/setup-env.sh installs
# tf-keras without dependencies so that the full (CUDA) package is not installed over it.
PROVIDED_BY = {"tensorflow": "tensorflow-cpu"}


def closure(root: str, extras: set[str], exclude: set[str]) -> dict[str, str]:
    """``{canonical name: version}`` of ``root`` (with ``extras``) and everything it requires."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen or key in exclude:
            continue
        seen.add((key, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if key in PROVIDED_BY:
                todo.append((PROVIDED_BY[key], wanted))
                continue
            raise SystemExit(
                f"pack_requirements: {name} is required but not installed in {sys.prefix}"
            ) from None
        if key != canonicalize_name(root):
            pins[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return pins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", default="recpipe")
    p.add_argument("--extras", default="train,eval", help="comma-separated extras of the package")
    p.add_argument("--exclude", default="pyspark", help="comma-separated names to leave out")
    args = p.parse_args(argv)
    extras = {e.strip() for e in args.extras.split(",") if e.strip()}
    exclude = {canonicalize_name(e) for e in args.exclude.split(",") if e.strip()}
    for name, version in sorted(closure(args.package, extras, exclude).items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
