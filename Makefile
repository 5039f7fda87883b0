# Tugboat developer targets. `make` (or `make help`) lists them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
GOFMT ?= gofmt
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 20s
# Extra flags for the benchmark programs, e.g. `make bench-store BENCHFLAGS='-rounds 5 -duration 10s'`.
BENCHFLAGS ?=

# Every bench-* target in this file; `make bench` runs them one after another.
BENCH_TARGETS := $(shell sed -n 's/^\(bench-[a-z0-9-]*\):.*/\1/p' $(firstword $(MAKEFILE_LIST)))

.PHONY: help build test bench $(BENCH_TARGETS) fuzz lint check run kubectl clean

help: ## list the targets
	@echo "usage: make <target>"
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | \
		sed -E 's/^([a-z0-9-]+):.*## (.*)/\1\t\2/' | \
		awk -F '\t' '{ printf "  %-12s %s\n", $$1, $$2 }'

build: plugins ## build bin/tugboat (once cmd/tugboat exists), every package and the plugins
	@if [ -d cmd/tugboat ]; then \
		echo "$(GO) build -o bin/tugboat ./cmd/tugboat"; \
		$(GO) build -o bin/tugboat ./cmd/tugboat; \
	else \
		echo "cmd/tugboat not yet present"; \
	fi
	$(GO) build ./...

test: plugins ## build the plugins, then run every test with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: plugins
plugins: ## build every main package under plugins/ to bin/plugins/<name>.wasm (wasip1/wasm, c-shared)
	@mkdir -p bin/plugins
	@dirs=$$(GOOS=wasip1 GOARCH=wasm $(GO) list -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' ./plugins/...); \
	for dir in $$dirs; do \
		out=bin/plugins/$$(basename "$$dir").wasm; \
		echo "GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $$out ./$${dir#$$PWD/}"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o "$$out" "$$dir"; \
	done

bench: ## run every bench-* program, one after another
	@for t in $(BENCH_TARGETS); do \
		echo "== make $$t"; \
		$(MAKE) --no-print-directory $$t; \
	done

bench-store: ## store benchmark: go run ./cmd/tugbench store, with BENCHFLAGS
	@if [ ! -d cmd/tugbench ]; then echo "cmd/tugbench not yet present"; exit 1; fi
	$(GO) run ./cmd/tugbench store $(BENCHFLAGS)

bench-api: ## API benchmark: go run ./cmd/tugbench api (starts tugboat server), with BENCHFLAGS
	@if [ ! -d cmd/tugbench ]; then echo "cmd/tugbench not yet present"; exit 1; fi
	$(GO) run ./cmd/tugbench api $(BENCHFLAGS)

bench-plugins: ## Wasm plugin benchmark: go run ./cmd/tugbench plugins (admission vs native, cold start, deadlines), with BENCHFLAGS
	$(GO) run ./cmd/tugbench plugins $(BENCHFLAGS)

bench-scheduler: plugins ## scheduler benchmark: go run ./cmd/tugbench scheduler (5000 nodes; basic, anti-affinity, node affinity; Wasm vs native), with BENCHFLAGS
	$(GO) run ./cmd/tugbench scheduler $(BENCHFLAGS)

bench-agent: ## node agent benchmark: go run ./cmd/tugbench agent (100 exec-runtime pods: creation->Running p50/p99, agent idle RSS/CPU), with BENCHFLAGS
	$(GO) run ./cmd/tugbench agent $(BENCHFLAGS)

bench-controllers: plugins ## controllers benchmark: go run ./cmd/tugbench controllers (100 Deployments x 10 replicas on 100 sim nodes -> all Running, startup p99, server CPU), with BENCHFLAGS
	$(GO) run ./cmd/tugbench controllers $(BENCHFLAGS)

bench-network: ## network benchmark (root, in netns): go run ./cmd/tugbench network (iptables sync 1000 svc x 10 ep, cluster IP vs direct), with BENCHFLAGS
	$(GO) run ./cmd/tugbench network $(BENCHFLAGS)

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

run: plugins ## build bin/tugboat and the plugins, start a single-node cluster with configs/tugboat.yaml (state in ./data)
	$(GO) build -o bin/tugboat ./cmd/tugboat
	@if [ ! -x bin/kubectl ]; then \
		echo "note: bin/kubectl is not built yet; run 'make kubectl' in another terminal (a few minutes the first time) or use any kubectl"; \
	fi
	./bin/tugboat server --config configs/tugboat.yaml

kubectl: ## build bin/kubectl: upstream kubectl pinned by tools/kubectl/go.mod (minutes cold, seconds warm)
	@# k8s.io/kubectl v0.X.Y is Kubernetes v1.X.Y; stamp it as kubectl's version.
	cd tools/kubectl && v=$$(sed -n 's|^[[:space:]]*k8s.io/kubectl v0\.\([0-9.]*\).*|\1|p' go.mod) && \
		$(GO) build -o ../../bin/kubectl \
		-ldflags "-X k8s.io/component-base/version.gitVersion=v1.$$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$${v%%.*}" .

clean: ## remove bin/
	rm -rf bin/
