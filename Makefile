# WholeCare — developer and CI entry points. `make help` lists them.
#
# The two commands a newcomer needs:
#   make run    build, start the embedded PostgreSQL, migrate, seed, start every service
#   make test   build, start a throwaway PostgreSQL, run every test, stop it
SHELL := /bin/bash
.DEFAULT_GOAL := help

SWIFT        ?= swift
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DATA_DIR     ?= .data
BIN_DIR       = $(shell $(SWIFT) build --show-bin-path)
RELEASE_DIR   = $(shell $(SWIFT) build -c release --show-bin-path)
# Release builds are optimised across modules at link time (thin LTO, our code with
# SwiftNIO's, Hummingbird's and swift-protobuf's): 6-7 % more summaries a second
# (docs/BENCHMARKS.md, sixteenth session), at the cost of a longer build (14.5 against
# 4.5 minutes from clean here). The images build with the same flags;
# `make build-release RELEASE="-c release"` builds without.
RELEASE       = -c release --experimental-lto-mode=thin
WHOLECARE     = $(BIN_DIR)/wholecare

# System packages a fresh Debian machine of this kind lacks (see docs/operations.md).
APT_PACKAGES := pkg-config libpq-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
                postgresql postgresql-contrib python3 python3-venv python3-yaml wrk docker-compose

.PHONY: openapi help deps build build-release run test db db-stop proto bench bench-rpc bench-identity bench-ledger bench-records bench-gateway bench-pgclient clean c-client

# $(call pytool,name,requirements): a pinned virtual environment at $(DATA_DIR)/pytools/name.
define pytool
marker="$(DATA_DIR)/pytools/$(1)/.installed"; want="$(2)"; \
if [ ! -f "$$marker" ] || [ "$$(cat "$$marker")" != "$$want" ]; then \
  echo "deps: installing $$want into $(DATA_DIR)/pytools/$(1)"; \
  rm -rf "$(DATA_DIR)/pytools/$(1)" && python3 -m venv "$(DATA_DIR)/pytools/$(1)" && \
  "$(DATA_DIR)/pytools/$(1)/bin/pip" install -q --disable-pip-version-check $$want && \
  echo "$$want" > "$$marker"; \
fi
endef

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install missing system packages with apt-get (quiet and fast when all are present)
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Python test tools, each in its own virtual environment under .data/pytools (PyPI),
	@# pinned; a marker file records a finished install so a broken one is redone.
	@$(call pytool,fhir,fhir.resources==5.1.1 pydantic<2)
	@$(call pytool,schemathesis,schemathesis==4.32.5)

# One build command everywhere: mixing `--product X` builds with full builds makes
# SwiftPM recompile shared dependencies each time it alternates.
build: deps c-client ## Build every executable and test (debug), and the C client
	@$(SWIFT) build --build-tests

build-release: deps ## Build the executables in release mode (with link-time optimisation)
	@$(SWIFT) build $(RELEASE)

db: build ## Start the local PostgreSQL under .data/dev (or bootstrap $DATABASE_URL)
	@$(WHOLECARE) db start --data-dir $(DATA_DIR) --cluster dev
	@set -a; . $(DATA_DIR)/dev/env; set +a; $(WHOLECARE) migrate

db-stop: ## Stop the local PostgreSQL (data kept)
	@$(WHOLECARE) db stop --data-dir $(DATA_DIR) --cluster dev

run: build db ## Start everything on the embedded PostgreSQL; Ctrl-C stops it all
	@# Ctrl-C reaches every process in the terminal's group; the shell survives it (trap)
	@# so that, once `wholecare up` has stopped the services, it stops the database too.
	@trap 'true' INT TERM; \
	$(WHOLECARE) up --seed --bin-dir $(BIN_DIR) --env-file $(DATA_DIR)/dev/env; status=$$?; \
	$(WHOLECARE) db stop --data-dir $(DATA_DIR) --cluster dev; exit $$status

test: build ## Run every test against a throwaway PostgreSQL; exit code is the truth
	@$(WHOLECARE) db start --data-dir $(DATA_DIR) --cluster test --fresh
	@set -a; . $(DATA_DIR)/test/env; set +a; \
	export WHOLECARE_BIN_DIR="$(BIN_DIR)" WHOLECARE_FHIR_PYTHON="$(CURDIR)/$(DATA_DIR)/pytools/fhir/bin/python" \
	  WHOLECARE_SCHEMATHESIS="$(CURDIR)/$(DATA_DIR)/pytools/schemathesis/bin/st"; \
	$(SWIFT) test --skip-build; status=$$?; \
	$(WHOLECARE) db stop --data-dir $(DATA_DIR) --cluster test --remove >/dev/null; \
	exit $$status

proto: deps ## Regenerate the committed Swift code from proto/ (only needed after editing a .proto)
	@proto/generate.sh
	@python3 Services/Gateway/OpenAPI/build.py

openapi: ## Rebuild the gateway's OpenAPI document from its paths and the proto schemas
	@python3 Services/Gateway/OpenAPI/build.py

bench: bench-rpc bench-pgclient bench-identity bench-ledger bench-records bench-gateway ## Run every benchmark (release builds) and print figures

bench-rpc: deps ## RPC: WholeCare vs grpc-swift-2 vs bare NIO echo, and server memory (release)
	@echo "bench-rpc: building the benchmark package in release mode (first time: ~15 minutes, it builds gRPC)"
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) >/dev/null
	@cd Tests/Benchmarks && .build/release/rpc-bench compare 5
	@cd Tests/Benchmarks && .build/release/rpc-bench memory 1000000

bench-identity: db ## Identity: sign-in latency (OWASP scrypt) and token verification cost (release)
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) --product service-bench >/dev/null
	@set -a; . $(DATA_DIR)/dev/env; set +a; cd Tests/Benchmarks && .build/release/service-bench identity

bench-ledger: db ## Ledger: postings/s through RPC at 1 and 8 clients, batch invoices/s, next to pgbench TPC-B
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) --product service-bench >/dev/null
	@set -a; . $(DATA_DIR)/dev/env; set +a; cd Tests/Benchmarks && .build/release/service-bench ledger

bench-records: db ## Records: summary latency for a person with 500 entries
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) --product service-bench >/dev/null
	@set -a; . $(DATA_DIR)/dev/env; set +a; cd Tests/Benchmarks && .build/release/service-bench records

bench-pgclient: db ## Postgres client: SELECT 1 from 64 tasks on 8 connections, awaited and blocking, next to pgbench
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) --product service-bench >/dev/null
	@set -a; . $(DATA_DIR)/dev/env; set +a; cd Tests/Benchmarks && .build/release/service-bench pgclient

bench-gateway: db ## Gateway: wrk on GET /v1/me/record at 1 and 64 connections, next to its SQL in pgbench and a bare handler
	@cd Tests/Benchmarks && $(SWIFT) build $(RELEASE) --product service-bench >/dev/null
	@set -a; . $(DATA_DIR)/dev/env; set +a; cd Tests/Benchmarks && .build/release/service-bench gateway

c-client: deps ## Build the C client library and example (clients/c/build)
	@$(MAKE) --no-print-directory -s -C clients/c

clean: ## Remove build products and local databases
	-@$(WHOLECARE) db stop --data-dir $(DATA_DIR) --cluster dev >/dev/null 2>&1
	-@$(WHOLECARE) db stop --data-dir $(DATA_DIR) --cluster test >/dev/null 2>&1
	rm -rf .build $(DATA_DIR)
	@$(MAKE) --no-print-directory -s -C clients/c clean
