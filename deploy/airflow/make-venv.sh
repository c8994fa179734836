#!/usr/bin/env bash
# Create (or reuse) build/airflow-venv with Airflow + the Spark provider, for the DAG import test.
# Airflow's dependencies clash with the pipeline's, so it never goes into .venv.
# Usage: deploy/airflow/make-venv.sh [VENV_DIR]   (reuses the venv while requirements are unchanged)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-build/airflow-venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.recpipe-airflow"
WANT="$(cat deploy/airflow/requirements.txt deploy/airflow/constraints.txt | cksum)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "airflow-venv: up to date ($VENV)"
  exit 0
fi
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q \
  -r deploy/airflow/requirements.txt -c deploy/airflow/constraints.txt
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import airflow, airflow.providers.apache.spark.operators.spark_submit"
echo "$WANT" > "$STAMP"
echo "airflow-venv: ok ($VENV) in $(( $(date +%s) - start ))s"
