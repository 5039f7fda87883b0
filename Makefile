# Tugboat developer targets. `make` (or `make help`) lists them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
GOFMT ?= gofmt
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 20s
# Extra flags for the benchmark programs, e.g. `make bench-store BENCHFLAGS='-writers 64'`.
BENCHFLAGS ?=

# Every bench-* target in this file; `make bench` runs them one after another.
BENCH_TARGETS := $(shell sed -n 's/^\(bench-[a-z0-9-]*\):.*/\1/p' $(firstword $(MAKEFILE_LIST)))

.PHONY: help build test bench $(BENCH_TARGETS) fuzz lint check run clean

help: ## list the targets
	@echo "usage: make <target>"
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | \
		sed -E 's/^([a-z0-9-]+):.*## (.*)/\1\t\2/' | \
		awk -F '\t' '{ printf "  %-12s %s\n", $$1, $$2 }'

build: ## build bin/tugboat (once cmd/tugboat exists) and every package
	@if [ -d cmd/tugboat ]; then \
		echo "$(GO) build -o bin/tugboat ./cmd/tugboat"; \
		$(GO) build -o bin/tugboat ./cmd/tugboat; \
	else \
		echo "cmd/tugboat not yet present"; \
	fi
	$(GO) build ./...

test: ## run every test with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

bench: ## run every bench-* program, one after another
	@for t in $(BENCH_TARGETS); do \
		echo "== make $$t"; \
		$(MAKE) --no-print-directory $$t; \
	done

bench-store: ## store benchmark: go run ./cmd/tugbench store, with BENCHFLAGS
	@if [ ! -d cmd/tugbench ]; then echo "cmd/tugbench not yet present"; exit 1; fi
	$(GO) run ./cmd/tugbench store $(BENCHFLAGS)

fuzz: ## run each Go fuzz target for FUZZTIME (default 20s)
	@list=$$($(GO) test -list '^Fuzz' ./...); \
	targets=$$(awk '/^Fuzz/ { names[n++] = $$1; next } \
		/^ok/ { for (i = 0; i < n; i++) print $$2 " " names[i]; n = 0 }' <<<"$$list"); \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	while read -r pkg name; do \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null; \
	done <<<"$$targets"

lint: ## gofmt -l prints nothing, go vet, go mod tidy leaves go.mod/go.sum unchanged
	@unformatted=$$(find . -type f -name '*.go' \
		-not -path './.git/*' -not -path './.cache/*' -not -path './bin/*' -print0 | \
		xargs -0 -r $(GOFMT) -l); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

check: lint ## same as lint (CI runs it)

run: ## start tugboat server with configs/tugboat.yaml (arrives with the API server)
	@if [ ! -d cmd/tugboat ]; then \
		echo "make run arrives with the API server (tugboat server); cmd/tugboat is not yet present."; \
		echo "Until then: make test, make bench-store."; \
		exit 1; \
	fi
	$(GO) build -o bin/tugboat ./cmd/tugboat
	./bin/tugboat server --config configs/tugboat.yaml

clean: ## remove bin/
	rm -rf bin/
