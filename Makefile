# modelfleet: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `python -m` would put the repo root first on sys.path, where operator/ (modelfleet.operator's
# folder) could shadow the standard library's `operator` in a fresh venv; -P semantics prevent it.
export PYTHONSAFEPATH := 1

.PHONY: help install lint typecheck fmt crds docs test test-unit test-integration test-e2e test-real setup \
        cluster-build cluster-up cluster-down cluster-env real-up real-down real-env operator serve examples \
        bench bench-server bench-operator bench-rollout bench-model-aware demo test-kind clean

help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with python3 -m venv and install .[dev]

lint: $(STAMP) ## ruff (lint + format check), mypy --strict (typecheck), import-linter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(VENV)/bin/lint-imports

typecheck: $(STAMP) ## mypy --strict over the package, hack/, bench/ and tests/ (the pre-commit hook runs this)
	$(VENV)/bin/mypy -p modelfleet
	$(VENV)/bin/mypy hack/modelfleet_dev bench tests

fmt: $(STAMP) ## Format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

setup: $(STAMP) ## Everything the test tiers need: control-plane binaries, Prometheus, example models
	bash hack/setup.sh

test: $(STAMP) ## Set up what is missing, lint, then every tier (the real tier's set-up builds meanwhile)
	PY=$(PY) bash hack/test.sh

test-unit: $(STAMP) ## Only the pure unit tests
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) ## Only the integration tier (real local control plane)
	$(MAKE) --no-print-directory setup
	$(PY) -m pytest tests/integration

test-e2e: $(STAMP) ## Only the e2e tier (control plane + Prometheus + server processes)
	$(MAKE) --no-print-directory setup
	$(PY) -m pytest tests/e2e

test-real: $(STAMP) ## Only the real tier (real node, our images, Traefik, the operator as a Pod)
	$(MAKE) --no-print-directory setup
	bash hack/setup-real.sh
	$(PY) -m pytest tests/real

clean: ## Remove build leftovers and caches (keeps .venv and the binary cache)
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis

# --- model server (model server issue) ---
serve: $(STAMP) examples ## Serve the example model locally (modelfleet serve)
	$(VENV)/bin/modelfleet serve --model examples/models/model.txt --host 127.0.0.1

examples: $(STAMP) ## Train the example models into examples/models/
	$(PY) examples/train_models.py --out examples/models

bench-server: $(STAMP) ## Benchmark the server against MLServer, KServe and a bare-ASGI ceiling
	$(PY) bench/server/run.py

.PHONY: bench-server-cache
bench-server-cache: $(STAMP) ## Benchmark the prediction cache: off, in process, Redis; hit rate and latency at repeat ratios 0/0.5/0.9 (~2.5 min)
	$(PY) bench/server/cache.py $(BENCH_SERVER_CACHE_ARGS)

.PHONY: bench-server-auth
bench-server-auth: $(STAMP) ## Benchmark auth per request: none, API key, JWT RS256/ES256 reused and fresh, JWT + rate limit (~1 min)
	$(PY) bench/server/auth.py $(BENCH_SERVER_AUTH_ARGS)

# --- local control plane (local control plane issue) ---
cluster-build: $(STAMP) ## Build (or reuse from cache) etcd, kube-apiserver, controller-manager, scheduler, kwok
	PYTHONPATH=hack $(PY) -m modelfleet_dev.localcluster build

cluster-up: $(STAMP) ## Start the local control plane, kwok nodes and Prometheus
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.localcluster up

cluster-down: $(STAMP) ## Stop everything cluster-up started
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.localcluster down

cluster-env: $(STAMP) ## Print the exports (KUBECONFIG, PROMETHEUS_URL) for the running local cluster
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.localcluster env

# --- real tier (real-node issue): real nodes in a network namespace beside the kwok nodes ---
real-up: $(STAMP) ## Start the control plane plus real nodes (kubelet, containerd) in a netns (REAL_ARGS=--nodes 2)
	bash hack/setup.sh
	bash hack/setup-real.sh
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.realnode up $(REAL_ARGS)

real-down: $(STAMP) ## Stop the real tier and remove its namespace, mounts and cgroups
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.realnode down

real-env: $(STAMP) ## Print the exports (KUBECONFIG, GATEWAY_URL, …) for the running real tier
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.realnode env

.PHONY: images
images: $(STAMP) ## Build the real tier's images (pause, Traefik, server, operator) with buildah: IMAGES='ref …'
	bash hack/setup-real.sh
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.realnode.images $(IMAGES)

# --- operator (operator core and progressive delivery issues) ---
crds: $(STAMP) ## Regenerate crds/ (and the kustomize base's and the chart's copies) from the pydantic API models
	$(VENV)/bin/modelfleet crd > crds/modeldeployments.modelfleet.io.yaml
	$(VENV)/bin/modelfleet crd --peering > crds/kopf-peering.yaml
	cat crds/modeldeployments.modelfleet.io.yaml crds/kopf-peering.yaml | sed 's/^# Generated/---\n# Generated/' | tail -n +2 > manifests/operator/crds.yaml
	$(VENV)/bin/modelfleet crd > charts/modelfleet/crds/modeldeployments.modelfleet.io.yaml
	$(VENV)/bin/modelfleet crd --peering > charts/modelfleet/crds/kopf-peering.yaml

.PHONY: chart-files helm-lint
chart-files: ## Copy manifests/monitoring's alert rules and dashboard into the chart (charts/modelfleet/files)
	cp manifests/monitoring/prometheusrule.yaml manifests/monitoring/dashboard.json charts/modelfleet/files/

helm-lint: $(STAMP) ## Build helm (cached) and lint charts/modelfleet, then check it renders what kustomize does
	$$(PYTHONPATH=hack $(PY) -m modelfleet_dev.localcluster.helm) lint --strict charts/modelfleet
	$(PY) -m pytest tests/unit/test_helm_chart.py tests/integration/test_helm_chart.py

operator: $(STAMP) ## Run the operator against the cluster in KUBECONFIG
	$(VENV)/bin/modelfleet operator

bench-operator: $(STAMP) ## Benchmark apply-to-ready for 1/100/1000 ModelDeployments next to a no-operator ceiling
	$(PY) bench/operator/run.py --sizes 1,100,1000

bench-rollout: $(STAMP) ## Benchmark rollback detection time and false rollbacks against anchor defaults
	$(MAKE) --no-print-directory setup
	$(PY) bench/rollout/run.py $(BENCH_ROLLOUT_ARGS)

bench-model-aware: $(STAMP) ## Benchmark a silent-bug canary: time to rollback with the model-aware gates vs promoted without
	$(MAKE) --no-print-directory setup
	$(PY) bench/rollout/model_aware.py $(BENCH_MODEL_AWARE_ARGS)

.PHONY: bench-monitoring
bench-monitoring: $(STAMP) ## Benchmark monitoring: simulated windows, then real servers and Prometheus (false alarms, detection delay, operator cost at 100)
	$(MAKE) --no-print-directory setup
	$(PY) bench/monitoring/run.py
	PYTHONPATH=hack $(PY) bench/monitoring/live.py $(BENCH_MONITORING_ARGS)

.PHONY: bench-real
bench-real: $(STAMP) ## Benchmark rollouts and rollbacks through Traefik on the real tier (shares, weight → proxy, error → weight 0, warm start)
	$(MAKE) --no-print-directory setup
	bash hack/setup-real.sh
	$(PY) bench/real/run.py $(BENCH_REAL_ARGS)

docs: $(STAMP) ## Regenerate docs/reference.md from the API models, and docs/architecture.md's rollout diagram from the transition table
	$(PY) -m modelfleet.operator.reference > docs/reference.md
	$(PY) -m modelfleet.operator.rollout.transitions < docs/architecture.md > docs/architecture.md.new
	mv docs/architecture.md.new docs/architecture.md

test-kind: $(STAMP) ## The rollout story on a kind cluster (needs Docker and kind; not part of make test)
	bash tests/kind/run.sh

# --- demo (demo issue) ---
demo: $(STAMP) ## The main job: the story on a real node through Traefik (DEMO_ARGS=--kwok: on kwok's fake nodes; --keep)
	bash hack/setup.sh
	$(if $(findstring --kwok,$(DEMO_ARGS)),,bash hack/setup-real.sh)
	@PYTHONPATH=hack $(PY) -m modelfleet_dev.demo $(DEMO_ARGS)
