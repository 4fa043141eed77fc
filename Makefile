# Clientela — guessable targets. Only Python 3.11+ and make are needed; uv is installed on demand.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: help setup run test test-fast lint typecheck fmt contracts contracts-check broker clean \
	test-faults up down logs bench bench-outbox bench-ingest bench-profile bench-scoring eval-scoring bench-campaign

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	@echo "uv not found: installing it with pip"
	$(PYTHON) -m pip install --user --quiet uv \
	  || $(PYTHON) -m pip install --user --quiet --break-system-packages uv

setup: $(UV) ## Create .venv with every workspace package and the dev tools
	$(UV) sync --locked --inexact --all-packages

run: setup ## Run the embedded platform (broker, SQLite, in-process cache, 4 services, demo)
	$(UV) run clientela up

test: setup lint typecheck contracts-check ## Lint, typecheck, and run every test suite
	$(UV) run pytest $(PYTEST_ARGS)

test-faults: setup ## Full-size fault runs: crash (30k touchpoints, many kills) and soak
	CLIENTELA_FAULTS_FULL=1 $(UV) run pytest -m faults tests/reliability $(PYTEST_ARGS)

test-fast: setup ## Unit tests only
	$(UV) run pytest -m "not e2e" $(PYTEST_ARGS) shared/tests/unit services/*/tests/unit console/tests/unit

lint: setup ## ruff check and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: setup ## mypy --strict over every package
	$(UV) run mypy

fmt: setup ## Format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

contracts: setup ## Export the JSON Schemas of every contract into docs/contracts
	$(UV) run python -m clientela.shared.contracts.schema_export docs/contracts

contracts-check: setup ## Fail when docs/contracts is stale
	$(UV) run python -m clientela.shared.contracts.schema_export docs/contracts --check

up: ## Start the compose stack (Apache Kafka, PostgreSQL, Redis, four services)
	docker compose up -d --build

down: ## Stop the compose stack (data stays in the volumes)
	docker compose down

logs: ## Follow the compose stack's logs
	docker compose logs -f --tail=100

broker: setup ## Run only the embedded broker in the foreground
	$(UV) run python -m clientela.shared.embedded_broker

# Benchmarks print a table and write one flat JSON object to .bench/<target>.json.
bench: setup ## The whole platform end to end vs a bare Kafka relay (ARGS="--rate 2000 ...")
	$(UV) run python -m clientela.platform.bench --output .bench/bench.json --chart .bench/bench.png $(ARGS)

bench-outbox: setup ## Inbox + outbox + relay path on PostgreSQL, CPU per event
	$(UV) run python -m clientela.platform.bench_outbox --output .bench/bench-outbox.json $(ARGS)

bench-ingest: setup ## HTTP ingest events/s vs a bare producer
	$(UV) run python -m clientela.ingest.bench --output .bench/bench-ingest.json $(ARGS)

bench-profile: setup ## Touchpoints/s applied into PostgreSQL, lookup latency under load
	$(UV) run python -m clientela.profile.bench --output .bench/bench-profile.json $(ARGS)

bench-scoring: setup ## Profiles re-scored/s and the population sweep time
	$(UV) run python -m clientela.scoring.bench --output .bench/bench-scoring.json $(ARGS)

eval-scoring: setup ## Predictive quality on a holdout (CDNOW by default; DATA=tx.csv CUTOFF= END=)
	$(UV) run python -m clientela.scoring.evaluate --output .bench/eval-scoring.json \
	  $(if $(DATA),--data $(DATA)) $(if $(CUTOFF),--cutoff $(CUTOFF)) $(if $(END),--end $(END)) $(ARGS)

bench-campaign: setup ## Campaign decisions/s under realistic load
	$(UV) run python -m clientela.campaign.bench --output .bench/bench-campaign.json $(ARGS)

clean: ## Remove local state and caches
	rm -rf .clientela .pytest_cache .mypy_cache .ruff_cache
