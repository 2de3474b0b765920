# marketmesh: the two commands that matter are `make run` and `make test`.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

export GOTOOLCHAIN := local

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SERVICES := users products publications images orders notifications
BIN      := bin
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Every module in go.work, and every package of them.
MODULES   = $(shell go list -m -f '{{.Dir}}')
PKGS      = $(addsuffix /...,$(MODULES))
# Ports each image listens on (documentation in the image: EXPOSE).
PORTS_users        := 9101 9201
PORTS_products     := 9102 9202
PORTS_publications := 9103 9203
PORTS_images       := 9104 9204 9304
PORTS_orders       := 9105 9205
PORTS_notifications := 9106 9206
PORTS_api          := 8080 9200
export PORTS_users PORTS_products PORTS_publications PORTS_images PORTS_orders PORTS_notifications PORTS_api
# Tests find the consul binary on PATH (built once by scripts/consul.sh).
TESTPATH  = PATH="$$(dirname "$$($(CURDIR)/scripts/consul.sh)"):$$PATH"

CONSUL_VERSION := 1.22.0
.PHONY: help run test build consul vet lint fmt bench bench-table chaos clean docker consul-image compose-secrets compose-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: build consul ## the whole mesh on this machine: Consul dev agent, every service, the api
	@scripts/run.sh

test: consul ## every test (race detector, no cache), each module on its own (GOWORK=off), as CI runs it
	@fail=; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && GOWORK=off $(TESTPATH) go test -race -count=1 -timeout 15m ./...) || fail="$$fail $$m"; \
	done; \
	if [ -n "$$fail" ]; then echo "FAIL:$$fail"; exit 1; fi

build: ## build every binary into bin/
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
		CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$s ./services/$$s || exit 1; \
	done
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/api ./api
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/meshsetup ./plugins/cmd/meshsetup
	@echo "built $(SERVICES) api meshsetup into $(BIN)/ (version $(VERSION))"

consul: ## make sure a consul binary exists (PATH, or built once from its Go module)
	@scripts/consul.sh >/dev/null

vet: ## gofmt, go vet, go mod tidy and GOWORK=off builds of every module; no binaries or large files in the tree
	@scripts/check-tree.sh
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)
	@for m in $(MODULES); do \
		(cd $$m && GOWORK=off go mod tidy -diff >/dev/null) || { echo "go.mod/go.sum not tidy in $$m: run 'cd $$m && GOWORK=off go mod tidy'"; exit 1; }; \
		(cd $$m && GOWORK=off go build ./... ) || { echo "$$m does not build on its own (GOWORK=off)"; exit 1; }; \
	done
	@echo "vet: tree clean, gofmt, go vet, tidy and standalone builds ok for $(words $(MODULES)) modules"

lint: vet ## alias of vet

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

bench: consul ## every module's Go benchmarks, then the table: the mesh under load against this machine's ceiling (regenerates docs/benchmarks.md)
	$(TESTPATH) go test -run '^$$' -bench . -benchtime 1s -count 1 $(filter-out %/e2e/...,$(PKGS))
	@$(MAKE) --no-print-directory bench-table

BENCH_DURATION ?= 8s
BENCH_PRODUCTS ?= 10000
bench-table: consul ## only the table (BENCH_DURATION per run, BENCH_PRODUCTS in the catalog); writes docs/benchmarks.md and docs/benchmarks-latency.png
	@cd e2e && BENCH_TABLE=1 BENCH_OUT=$(CURDIR)/docs BENCH_DURATION=$(BENCH_DURATION) BENCH_PRODUCTS=$(BENCH_PRODUCTS) \
		$(TESTPATH) go test -count=1 -run '^TestBenchTable$$' -timeout 30m .

CHAOS_DURATION ?= 60s
chaos: consul ## kill -9 each service, SIGSTOP one, restart Consul and the mesh under mixed load; prints a table per fault, checks no write is lost
	@mkdir -p $(BIN); rm -f $(CURDIR)/$(BIN)/chaos-report.txt
	@cd e2e && CHAOS=1 CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_REPORT=$(CURDIR)/$(BIN)/chaos-report.txt \
		$(TESTPATH) go test -count=1 -run '^TestChaos$$' -timeout 20m . ; status=$$?; \
		cat $(CURDIR)/$(BIN)/chaos-report.txt 2>/dev/null; exit $$status

docker: ## build an image per service: marketmesh/<svc>:$(VERSION) and :latest, and marketmesh/meshsetup (FROM scratch, nothing pulled)
	@mkdir -p $(BIN)/docker/empty
	@for s in $(SERVICES) api meshsetup; do \
		pkg=./services/$$s; [ $$s = api ] && pkg=./api; [ $$s = meshsetup ] && pkg=./plugins/cmd/meshsetup; \
		CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/docker/$$s $$pkg || exit 1; \
	done
	@test -r /etc/ssl/certs/ca-certificates.crt || { echo "need /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"; exit 1; }
	@cp /etc/ssl/certs/ca-certificates.crt $(BIN)/docker/
	@for s in $(SERVICES) api; do \
		p=PORTS_$$s; docker build -q -f build/docker/Dockerfile --build-arg SERVICE=$$s --build-arg PORTS="$${!p}" \
			--build-arg VERSION=$(VERSION) -t marketmesh/$$s:$(VERSION) -t marketmesh/$$s:latest . >/dev/null || exit 1; \
		echo "built marketmesh/$$s:$(VERSION) ($$(docker image inspect -f '{{.Size}}' marketmesh/$$s:latest | awk '{printf "%.1f MB", $$1/1e6}'))"; \
	done
	@docker build -q -f build/docker/meshsetup.Dockerfile --build-arg VERSION=$(VERSION) \
		-t marketmesh/meshsetup:$(VERSION) -t marketmesh/meshsetup:latest . >/dev/null
	@echo "built marketmesh/meshsetup:$(VERSION) ($$(docker image inspect -f '{{.Size}}' marketmesh/meshsetup:latest | awk '{printf "%.1f MB", $$1/1e6}'))"

consul-image: consul ## a local hashicorp/consul:$(CONSUL_VERSION) image from the consul binary (for machines with no registry)
	@if docker image inspect hashicorp/consul:$(CONSUL_VERSION) >/dev/null 2>&1; then \
		echo "hashicorp/consul:$(CONSUL_VERSION) is present"; \
	else \
		mkdir -p $(BIN)/consul-image && cp "$$(scripts/consul.sh)" $(BIN)/consul-image/consul && cp build/docker/passwd $(BIN)/consul-image/ && \
		docker build -q -f build/docker/consul.Dockerfile -t hashicorp/consul:$(CONSUL_VERSION) $(BIN)/consul-image >/dev/null && \
		echo "built a local hashicorp/consul:$(CONSUL_VERSION)"; \
	fi

compose-secrets: ## the docker secrets of docker-compose.yml (Consul tokens, keys), once, under .data/compose/secrets
	@scripts/compose-secrets.sh

compose-test: docker consul-image ## docker-compose up (its own throwaway secrets), check health, ACLs, smoke test, failure and restart, tear down
	scripts/compose-test.sh

clean: ## remove binaries and local data
	rm -rf $(BIN) .data
