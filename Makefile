# marketmesh: the two commands that matter are `make run` and `make test`.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

export GOTOOLCHAIN := local

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
SERVICES := users products publications images
BIN      := bin
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Every package of every module in go.work.
PKGS      = $(shell go list -m -f '{{.Dir}}/...')
# Tests find the consul binary on PATH (built once by scripts/consul.sh).
TESTPATH  = PATH="$$(dirname "$$(scripts/consul.sh)"):$$PATH"

CONSUL_VERSION := 1.22.0
.PHONY: help run test build consul vet lint fmt bench clean docker consul-image compose-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: build consul ## the whole mesh on this machine: Consul dev agent, every service, the api
	@scripts/run.sh

test: consul ## every test (race detector, no cache), as CI runs it
	$(TESTPATH) go test -race -count=1 -timeout 15m $(PKGS)

build: ## build every binary into bin/
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
		CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$s ./services/$$s || exit 1; \
	done
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/api ./api
	@echo "built $(SERVICES) api into $(BIN)/ (version $(VERSION))"

consul: ## make sure a consul binary exists (PATH, or built once from its Go module)
	@scripts/consul.sh >/dev/null

vet: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PKGS)

lint: vet ## alias of vet

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

bench: consul ## benchmarks that print figures (latency through the api, breaker fail-fast)
	$(TESTPATH) go test -run '^$$' -bench . -benchtime 2s -count 1 $(PKGS)

docker: ## build an image per service: marketmesh/<svc>:$(VERSION) and :latest (FROM scratch, nothing pulled)
	@mkdir -p $(BIN)/docker/empty
	@for s in $(SERVICES) api; do \
		pkg=./services/$$s; [ $$s = api ] && pkg=./api; \
		CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/docker/$$s $$pkg || exit 1; \
	done
	@test -r /etc/ssl/certs/ca-certificates.crt || { echo "need /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"; exit 1; }
	@cp /etc/ssl/certs/ca-certificates.crt $(BIN)/docker/
	@for s in $(SERVICES) api; do \
		df=services/$$s/Dockerfile; [ $$s = api ] && df=api/Dockerfile; \
		docker build -q -f $$df --build-arg VERSION=$(VERSION) -t marketmesh/$$s:$(VERSION) -t marketmesh/$$s:latest . >/dev/null || exit 1; \
		echo "built marketmesh/$$s:$(VERSION) ($$(docker image inspect -f '{{.Size}}' marketmesh/$$s:latest | awk '{printf "%.1f MB", $$1/1e6}'))"; \
	done

consul-image: consul ## a local hashicorp/consul:$(CONSUL_VERSION) image from the consul binary (for machines with no registry)
	@if docker image inspect hashicorp/consul:$(CONSUL_VERSION) >/dev/null 2>&1; then \
		echo "hashicorp/consul:$(CONSUL_VERSION) is present"; \
	else \
		mkdir -p $(BIN)/consul-image && cp "$$(scripts/consul.sh)" $(BIN)/consul-image/consul && cp build/docker/passwd $(BIN)/consul-image/ && \
		docker build -q -f build/docker/consul.Dockerfile -t hashicorp/consul:$(CONSUL_VERSION) $(BIN)/consul-image >/dev/null && \
		echo "built a local hashicorp/consul:$(CONSUL_VERSION)"; \
	fi

compose-test: docker consul-image ## docker-compose up, check health, smoke test, failure and restart, tear down
	scripts/compose-test.sh

clean: ## remove binaries and local data
	rm -rf $(BIN) .data
