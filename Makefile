# canaryd: `make demo` and `make test` work on a fresh machine with Python 3.11+ and apt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: setup prometheus chromium realkube realkube-if-go helm lint typecheck test demo sandbox bench clean crds

$(BIN)/canaryd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

setup: $(BIN)/canaryd prometheus chromium

# The sandbox runs the real Prometheus server from Debian's package.
prometheus:
	@if command -v prometheus >/dev/null 2>&1; then \
		echo "prometheus: $$(command -v prometheus)"; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus; \
	else \
		echo "prometheus is not on PATH. Install it as root with:"; \
		echo "    sudo apt-get update && sudo apt-get install -y prometheus"; \
		exit 1; \
	fi

# The dashboard's browser tests (tests/ui/) drive Debian's chromium through Playwright's
# Python package; Playwright never downloads a browser of its own. Without it, as a user,
# those tests skip and say why; CI (CI=true) needs it.
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	elif [ -n "$$CI" ]; then \
		echo "chromium is not on PATH; CI needs it for tests/ui/" >&2; exit 1; \
	else \
		echo "chromium is not on PATH: the browser tests (tests/ui/) are skipped. Install it with:"; \
		echo "    sudo apt-get update && sudo apt-get install -y chromium"; \
	fi

# The real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok), built
# from the Go module proxy into ~/.cache/canaryd/realkube/<versions>/ and reused from there.
realkube:
	@bash canaryd/sandbox/realkube/build.sh >/dev/null

# helm (for the chart's tests), built with `go install helm.sh/helm/v3/cmd/helm@<pinned>` into
# ~/.cache/canaryd/helm/<version>/bin/ beside the control plane, and reused from there.
helm:
	@bash deploy/helm/build-helm.sh >/dev/null

# `make test` runs the real tier when Go is there; without Go it says so (CI=true: an error).
realkube-if-go:
	@if command -v go >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory realkube helm; \
	elif [ -n "$$CI" ]; then \
		echo "realkube: go is not on PATH; CI needs the real control plane tier" >&2; exit 1; \
	else \
		echo "realkube: go is not on PATH: the real control plane tier is skipped"; \
	fi

lint: $(BIN)/canaryd
	$(BIN)/ruff check canaryd tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(BIN)/canaryd
	$(BIN)/mypy --strict canaryd

test: setup lint typecheck realkube-if-go
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -q -ra

# The demo and the sandbox need Prometheus, not the browser the UI tests use.
demo: $(BIN)/canaryd prometheus
	$(BIN)/canaryd demo

sandbox: $(BIN)/canaryd prometheus
	$(BIN)/canaryd sandbox

# Benchmarks print figures; they assert nothing (shared machines are noisy).
bench: setup
	$(BIN)/python bench/scale.py --rollouts 100 --interval 10s
	$(BIN)/python bench/api_bench.py
	$(BIN)/python bench/failover_bench.py --runs 10
	$(BIN)/python bench/judgement.py --runs 2000
	$(BIN)/python bench/hostile_bench.py
	$(BIN)/python bench/mesh_bench.py
	$(BIN)/python bench/hooks_bench.py

# The fuzz suites for longer than CI gives them: raw HTTP against the real server process,
# and schemathesis (every check, stateful links) against the API; each prints its case count.
FUZZ_SECONDS ?= 600
fuzz: setup
	CANARYD_FUZZ_SECONDS=$(FUZZ_SECONDS) CANARYD_FUZZ_EXAMPLES=100000000 \
		$(BIN)/pytest -q -s -p no:cacheprovider --timeout=0 tests/hostile/test_fuzz.py
	CANARYD_SCHEMATHESIS_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest -q -s -p no:cacheprovider \
		--timeout=0 tests/api/test_api_openapi.py -k schemathesis

# Regenerate the Rollout CRD from the models (a test fails when it is stale).
crds: $(BIN)/canaryd
	$(BIN)/python -m canaryd.crd > canaryd/data/crds/canaryd-rollout.yaml
	cp canaryd/data/crds/canaryd-rollout.yaml deploy/crds/canaryd-rollout.yaml
	cp canaryd/data/crds/canaryd-rollout.yaml deploy/helm/canaryd/crds/canaryd-rollout.yaml

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
