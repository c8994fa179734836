# recpipe developer entry points. `make demo` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
CONF ?= conf/local.yaml
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup demo test test-e2e test-fast bench lint clean package airflow-venv docker-image

setup:
	@bash deploy/setup-env.sh $(VENV)

demo: setup
	$(VENV)/bin/recpipe run --conf $(CONF)

# The suite (under 45 min on 2 cores). The Airflow end-to-end run (12 spark-submits), the
# demo-log noise count (`recpipe run` on 20k events) and a two-day `recpipe simulate` are test-e2e.
test: setup
	$(PY) -m pytest tests -m "not e2e" $(PYTEST_ARGS)

test-e2e: setup
	$(PY) -m pytest tests -m e2e $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest tests -m unit $(PYTEST_ARGS)

bench: setup
	$(PY) tests/perf/run_bench.py --out bench-results

# ruff, then mypy over libs/recpipe (configuration and the strictly typed modules: pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check libs jobs tests deploy
	$(VENV)/bin/ruff format --check libs jobs tests deploy
	$(VENV)/bin/mypy

# Wheel + packed environment (dist/) for spark-submit --archives; see deploy/README.md.
package: setup
	bash deploy/spark-submit.sh --build

# Airflow in its own venv (build/airflow-venv) for the DAG import test.
airflow-venv:
	bash deploy/airflow/make-venv.sh

# Needs a Docker engine and Maven Central (Delta jars); not run in CI.
docker-image: package
	docker build -f deploy/docker/Dockerfile -t recpipe:0.1.0 .

clean:
	rm -rf lakehouse data bench-results spark-warehouse .pytest_cache
