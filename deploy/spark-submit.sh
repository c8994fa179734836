#!/usr/bin/env bash
# Package recpipe (wheel + packed virtualenv) and spark-submit one stage's job (jobs/<stage>.py).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/spark-submit.sh STAGE [job args...]
       deploy/spark-submit.sh --build        (only build dist/ artifacts)
       deploy/spark-submit.sh --help

Builds, when out of date:
  dist/recpipe-<version>-py3-none-any.whl   pip wheel of libs/recpipe
  build/pack-venv/                          clean venv: the wheel + the exact versions of .venv's
                                            dependency closure of recpipe[$PACK_EXTRAS], minus pyspark
  dist/recpipe-env.tar.gz                   build/pack-venv packed with venv-pack
then runs
  spark-submit --master $MASTER --deploy-mode $DEPLOY_MODE \
    --archives dist/recpipe-env.tar.gz#environment \
    --conf spark.pyspark.python=./environment/bin/python  [$SUBMIT_ARGS]  jobs/STAGE.py [job args...]

Job args are the `recpipe STAGE` arguments, e.g. --conf conf/cluster.yaml --date 2026-10-05.

pyspark is NOT in the packed environment: Spark puts its own $SPARK_HOME/python/lib/pyspark.zip and
py4j zip on the PYTHONPATH of the driver and of every Python worker, so the Python side always matches
the cluster's JVM side. The packed environment needs Spark 4.x.

Driver Python:
  client mode (default; local[N] too): the driver runs here with build/pack-venv/bin/python, i.e. the
    same files as the archive (PYSPARK_DRIVER_PYTHON). Executors use ./environment/bin/python from the
    unpacked archive (in local mode too: Spark unpacks --archives into each worker's working folder).
  cluster mode (DEPLOY_MODE=cluster, YARN/Kubernetes): the driver also runs in the cluster, from the
    archive: spark.pyspark.driver.python=./environment/bin/python. Ship the config file with
    SUBMIT_ARGS="--files conf/cluster.yaml" and pass --conf cluster.yaml.

venv-pack does not copy the interpreter: the archive's bin/python links to the interpreter that built
build/pack-venv (PYTHON, default python3.11); machines that unpack it need Python 3.11 at
PACK_PYTHON_PREFIX (default: this interpreter's prefix; e.g. /usr/local in the Docker image).

Environment:
  MASTER          spark master (default local[2])
  DEPLOY_MODE     client | cluster (default client)
  SPARK_HOME      Spark installation whose bin/spark-submit is used (default: .venv's pyspark)
  SUBMIT_ARGS     extra spark-submit options, e.g. "--conf spark.executor.instances=4"
  PACK_EXTRAS     recpipe extras in the packed env (default train,eval; "" for a small env
                  without TensorFlow/Horovod)
  PYTHON          interpreter for build/pack-venv (default python3.11, else python3)
  PACK_PYTHON_PREFIX  venv-pack --python-prefix (default: none, keep this machine's path)
  VENV            the development venv holding the tested versions and venv-pack (default .venv)
  REBUILD=1       rebuild wheel, pack venv and archive even when up to date
EOF
}

cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${VENV:-.venv}"
DEV_PY="$ROOT/$VENV/bin/python"
MASTER="${MASTER:-local[2]}"
DEPLOY_MODE="${DEPLOY_MODE:-client}"
PACK_EXTRAS="${PACK_EXTRAS-train,eval}"
PACK_VENV="$ROOT/build/pack-venv"
ARCHIVE="$ROOT/dist/recpipe-env.tar.gz"
PIP_QUIET=(--disable-pip-version-check -q)

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
BUILD_ONLY=0
if [ "$1" = --build ]; then BUILD_ONLY=1; else
  STAGE="$1"
  shift
  if [ ! -f "jobs/$STAGE.py" ]; then
    echo "spark-submit.sh: no job for stage '$STAGE' (jobs/$STAGE.py); stages: $(cd jobs && ls ./*.py | sed 's|./||;s|\.py$||' | tr '\n' ' ')" >&2
    exit 2
  fi
fi
[ -x "$DEV_PY" ] || { echo "spark-submit.sh: $DEV_PY missing: run 'make setup' first" >&2; exit 1; }

log() { echo "spark-submit.sh: $*" >&2; }
newer_than() { # newer_than FILE PATHS...: true when FILE is missing or any of PATHS is newer
  [ -e "$1" ] || return 0
  local f="$1"; shift
  [ -n "$(find "$@" -newer "$f" -type f -not -path '*/__pycache__/*' -not -path '*.egg-info/*' \
    -print -quit 2>/dev/null)" ]
}

# 1. The wheel.
WHEEL="$(ls dist/recpipe-*.whl 2>/dev/null | head -n1 || true)"
if [ "${REBUILD:-0}" = 1 ] || [ -z "$WHEEL" ] || newer_than "$WHEEL" libs setup.py pyproject.toml README.md; then
  log "building the recpipe wheel"
  rm -f dist/recpipe-*.whl
  # setuptools reuses build/lib: a stale copy would put deleted modules into the wheel.
  rm -rf build/lib build/bdist.*
  "$DEV_PY" -m pip wheel "${PIP_QUIET[@]}" --no-deps --no-build-isolation . -w dist/
  WHEEL="$(ls dist/recpipe-*.whl | head -n1)"
fi

# 2. The pack venv: exact versions of .venv's dependency closure, pyspark excluded.
mkdir -p build
REQS="build/pack-requirements.txt"
"$DEV_PY" deploy/pack_requirements.py --extras "$PACK_EXTRAS" --exclude pyspark > "$REQS.new"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ "${REBUILD:-0}" = 1 ] || [ ! -x "$PACK_VENV/bin/python" ] || ! cmp -s "$REQS.new" "$PACK_VENV/.requirements"; then
  log "creating $PACK_VENV with $(wc -l < "$REQS.new") pinned packages (first time: several minutes)"
  "$PYTHON" -m venv --clear "$PACK_VENV"
  "$PACK_VENV/bin/python" -m pip install "${PIP_QUIET[@]}" --upgrade "pip>=24" setuptools wheel
  grep -v '^horovod==' "$REQS.new" > build/pack-requirements-nohvd.txt || true
  "$PACK_VENV/bin/python" -m pip install "${PIP_QUIET[@]}" --no-deps -r build/pack-requirements-nohvd.txt
  if grep -q '^horovod==' "$REQS.new"; then
    # Built against the TensorFlow just installed (no build isolation); pip reuses its cached wheel.
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
      HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO \
      "$PACK_VENV/bin/python" -m pip install "${PIP_QUIET[@]}" --no-deps --no-build-isolation \
      "$(grep '^horovod==' "$REQS.new")"
  fi
  mv "$REQS.new" "$PACK_VENV/.requirements"
  rm -f "$PACK_VENV/.wheel"
else
  rm -f "$REQS.new"
fi
cp "$PACK_VENV/.requirements" "$REQS"  # also read by deploy/docker/Dockerfile
if [ "$(cat "$PACK_VENV/.wheel" 2>/dev/null)" != "$(cksum < "$WHEEL")" ]; then
  log "installing $(basename "$WHEEL") into $PACK_VENV"
  "$PACK_VENV/bin/python" -m pip install "${PIP_QUIET[@]}" --no-deps --force-reinstall "$WHEEL"
  cksum < "$WHEEL" > "$PACK_VENV/.wheel"
  rm -f "$ARCHIVE"
fi

# 3. The archive.
if [ ! -f "$ARCHIVE" ] || [ "$PACK_VENV/.requirements" -nt "$ARCHIVE" ]; then
  log "packing $PACK_VENV into $ARCHIVE"
  prefix_args=()
  [ -n "${PACK_PYTHON_PREFIX:-}" ] && prefix_args=(--python-prefix "$PACK_PYTHON_PREFIX")
  "$ROOT/$VENV/bin/venv-pack" -q -p "$PACK_VENV" -o "$ARCHIVE.tmp" --format tar.gz --force "${prefix_args[@]}"
  chmod 644 "$ARCHIVE.tmp"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
fi
log "artifacts: $WHEEL, $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
[ "$BUILD_ONLY" = 1 ] && exit 0

# 4. Submit.
if [ -z "${SPARK_HOME:-}" ]; then
  # The pip-installed Spark of the development venv (its spark-submit would look for pyspark in
  # the driver's Python, which does not have it).
  SPARK_HOME="$("$DEV_PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  export SPARK_HOME
fi
SUBMIT="$SPARK_HOME/bin/spark-submit"
if [ -z "${JAVA_HOME:-}" ] && command -v java >/dev/null 2>&1; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  export JAVA_HOME
fi
case "$MASTER" in
  local*)
    # Local mode: driver and Python workers run here, from build/pack-venv (the archive's
    # content). Spark does unpack --archives in local mode, but Python workers start in the
    # driver's working folder, so ./environment would not resolve: no archive needed.
    submit_conf=(--conf "spark.pyspark.python=$PACK_VENV/bin/python"
      --conf "spark.pyspark.driver.python=$PACK_VENV/bin/python")
    ;;
  *)
    submit_conf=(--archives "$ARCHIVE#environment" --conf spark.pyspark.python=./environment/bin/python)
    if [ "$DEPLOY_MODE" = cluster ]; then
      submit_conf+=(--conf spark.pyspark.driver.python=./environment/bin/python)
    else
      # Client mode: the driver runs here (the conf wins over PYSPARK_DRIVER_PYTHON).
      submit_conf+=(--conf "spark.pyspark.driver.python=$PACK_VENV/bin/python")
    fi
    ;;
esac
unset PYSPARK_DRIVER_PYTHON PYSPARK_PYTHON
# Keep the development venv out of the job's Python.
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME
# shellcheck disable=SC2086  # SUBMIT_ARGS is a list of options on purpose
exec "$SUBMIT" --master "$MASTER" --deploy-mode "$DEPLOY_MODE" \
  --name "recpipe-$STAGE" \
  "${submit_conf[@]}" ${SUBMIT_ARGS:-} \
  "jobs/$STAGE.py" "$@"
