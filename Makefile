# Every target sets itself up: the virtualenv is (re)built when the pins change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-fanout test lint typecheck unit integration chaos bench package localstack-demo clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m baton demo

# The same, split over four chains that steal from each other; ends with the completion notice.
demo-fanout: $(STAMP)
	$(PY) -m baton demo --chains 4 --pages 600

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# The peers bench/versus.py runs (Crawlee, Scrapy, aiohttp) live in a virtualenv of their
# own, so `make test` never needs them; rebuilt when bench/requirements.txt changes.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

# make bench [QUICK=1] [HUGE=1]: bench/results.json and BENCHMARKS.md (bench/run_all.py)
bench: $(STAMP) $(BENCH_STAMP)
	$(PY) -m bench.run_all $(if $(QUICK),--quick) $(if $(HUGE),--huge) --bench-python $(BENCH_PY)

.PHONY: bench-setup bench-profile
bench-setup: $(BENCH_STAMP)

# make bench-profile [BEFORE=<a worktree of an earlier commit>]: where a leg's CPU per page
# goes, stage by stage, next to the plain loop (bench/profile_leg.py, py-spy from bench-setup)
bench-profile: $(STAMP) $(BENCH_STAMP)
	$(PY) -m bench.profile_leg $(if $(BEFORE),--tree before=$(BEFORE))

$(BENCH_STAMP): bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

# make chaos [SEED=1] [RUNS=6] [TASKS=300]: a seeded soak under every fault (devstack/chaos/)
chaos: $(STAMP)
	$(PY) -m devstack.chaos --seed $(or $(SEED),1) --runs $(or $(RUNS),6) --tasks $(or $(TASKS),300)

# make sim [SEED=n] [RUNS=n]: the deterministic simulator (tests/sim/). SEED alone replays that
# world with its whole trace; RUNS soaks seeds SEED.. (default 1..) on every core; neither: 10,000
.PHONY: sim
sim: $(STAMP)
	$(PY) -m tests.sim $(if $(SEED),--seed $(SEED)) $(if $(RUNS),--runs $(RUNS),$(if $(SEED),,--runs 10000))

package: $(STAMP)
	$(PY) -m infra.package build/lambda.zip

# Needs Docker: LocalStack in docker-compose.yml, then the same demo against it.
localstack-demo: $(STAMP)
	docker compose up -d --wait
	$(PY) -m infra.deploy_localstack --bucket baton-local --timeout 10 \
		--allow-nets 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16
	$(PY) -m baton --endpoint-url http://localhost:4566 --bucket baton-local demo
