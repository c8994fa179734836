#!/usr/bin/env bash
# Create .venv with the pinned stack of stack.md. Heavy steps run only when missing, so a second
# run takes seconds. Usage: deploy/setup-env.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.recpipe-stack-v2"

need_debs=()
for pkg in cmake g++ libhighwayhash-dev libfarmhash-dev openjdk-17-jre-headless; do
  if [ "$pkg" = openjdk-17-jre-headless ] && command -v java >/dev/null 2>&1; then continue; fi
  dpkg -s "$pkg" >/dev/null 2>&1 || need_debs+=("$pkg")
done
# System BLAS/LAPACK for Spark ML (ALS): without them netlib prints "dlopen(libblas.so.3) failed"
# and falls back to its Java code. Wanted, not required: installed when we can, else a note.
want_debs=()
for pkg in libblas3 liblapack3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || want_debs+=("$pkg")
done
if [ ${#need_debs[@]} -gt 0 ] && [ ! -f "$STAMP" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need_debs[*]} ${want_debs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_debs[@]}" "${want_debs[@]}" >/dev/null
    want_debs=()
  else
    echo "setup: please install these Debian packages first (as root): ${need_debs[*]} ${want_debs[*]}" >&2
    exit 1
  fi
fi
if [ ${#want_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${want_debs[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want_debs[@]}"; } >/dev/null 2>&1 \
      || echo "setup: could not install ${want_debs[*]}; Spark ML uses its Java BLAS (and says so once)" >&2
  else
    echo "setup: note: ${want_debs[*]} not installed; Spark ML (ALS) uses its Java BLAS and prints two dlopen lines" >&2
  fi
fi

"$PY" -c 'import sys; assert sys.version_info[:2] in ((3,10),(3,11)), "recpipe needs Python 3.10/3.11 (TensorFlow 2.17 + Horovod 0.28.1)"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

if [ ! -f "$STAMP" ]; then
  echo "setup: installing the pinned stack into $VENV (first run: several minutes)"
  $PIP install --upgrade "pip>=24" wheel setuptools
  # pyarrow 18.1: pyspark 4.2 requires >= 18 for Arrow transfers; it runs with numpy 1.26 (verified).
  $PIP install tensorflow-cpu==2.17.1 "numpy<2" "pyarrow==18.1.0" "pandas<3"
  # tf-keras requires the name `tensorflow`: with its dependencies pip would add the full (CUDA)
  # package over tensorflow-cpu's files, whose XLA plugins print "Unable to register cuDNN/cuFFT/
  # cuBLAS factory" at every import. tensorflow-cpu provides the same module.
  $PIP install --no-deps tf-keras==2.17.0
  if ! "$VENV/bin/python" -c "import horovod.tensorflow" >/dev/null 2>&1; then
    echo "setup: building horovod 0.28.1 against TensorFlow 2.17.1 (about 8 minutes the first time; pip caches the wheel)"
    # --no-build-isolation: horovod's build imports the TensorFlow installed above.
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
      HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO MAKEFLAGS=-j2 \
      $PIP install --no-build-isolation horovod==0.28.1
  fi
  $PIP install "deltalake==1.6.*" "delta-spark==4.4.*" "great-expectations==1.24.*" \
    "numpy<2" "pyarrow==18.1.0" "pandas<3" pyyaml scikit-learn matplotlib \
    pytest ruff nbformat nbclient ipykernel psutil venv-pack
  touch "$STAMP"
fi
# A venv set up before the --no-deps tf-keras (both `tensorflow` and `tensorflow-cpu` installed,
# one package's files over the other's): back to tensorflow-cpu alone. Horovod needs no rebuild
# (same TensorFlow version and ABI).
if "$VENV/bin/python" -m pip show -q tensorflow >/dev/null 2>&1; then
  echo "setup: removing the full tensorflow package that tf-keras pulled in (tensorflow-cpu stays)"
  $PIP uninstall -y tensorflow
  $PIP install --no-deps --force-reinstall tensorflow-cpu==2.17.1
fi
# MLflow experiment tracking (the `train` extra; README, "Pinned stack"), checked on every run so
# an existing .venv gets it too. protobuf<5 spelled out: pip does not weigh the installed
# TensorFlow's bound and would take protobuf 7 with the newest opentelemetry-proto.
if [ "$("$VENV/bin/python" -m pip show mlflow-skinny 2>/dev/null | sed -n 's/^Version: //p')" != 3.18.0 ]; then
  echo "setup: installing mlflow-skinny 3.18.0 (experiment tracking)"
  $PIP install "mlflow-skinny==3.18.0" "sqlalchemy>=2.0,<2.2" "alembic>=1.13,<2" "protobuf>=3.20.3,<5" \
    "numpy<2" "pyarrow==18.1.0" "pandas<3"
fi
# The type checker of `make lint` (pyproject.toml [tool.mypy]), pinned like the `dev` extra of
# setup.py and checked on every run so an existing .venv gets it too.
if [ "$("$VENV/bin/python" -m pip show mypy 2>/dev/null | sed -n 's/^Version: //p')" != 2.4.1 ]; then
  echo "setup: installing mypy 2.4.1 (make lint)"
  $PIP install "mypy==2.4.1"
fi
# The package itself (editable): cheap, always refreshed.
$PIP install --no-deps -e .
# pip check, except tf-keras' requirement of the name `tensorflow` (tensorflow-cpu provides it).
check="$("$VENV/bin/python" -m pip check 2>&1 | grep -v '^tf-keras [0-9.]* requires tensorflow, which is not installed' || true)"
case "$check" in "" | "No broken requirements found.") ;; *) echo "$check" >&2; exit 1 ;; esac
echo "setup: ok ($VENV)"
