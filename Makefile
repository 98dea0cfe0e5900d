# relay: single-binary LLM API relay.
GO      ?= go
BIN     ?= bin/relay
CONFIG  ?= config.yaml
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: run build test test-race vet fmt-check bench-smoke bench bench-quick ci clean

# Build and start the relay on 127.0.0.1:8080 with config.yaml (demo upstream on, SQLite under ./data).
run: build
	./$(BIN) -config $(CONFIG) serve

# A static binary: pure-Go SQLite, no cgo.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/relay

# Every test, including fuzz seed corpora; no outside services.
test:
	$(GO) test -count=1 ./...

# The relay, store and adaptor tests (fault, breaker, failover and disconnect tests included) under the
# race detector (needs cgo and a C compiler; the -race build takes a few minutes on a cold cache).
test-race:
	$(GO) test -race -count=1 ./relay/... ./store/... ./adaptor/...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks in a short mode so they cannot rot (CI); `make bench` runs the full harness.
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime=100x ./...

# Relay vs direct vs a bare reverse proxy, all on loopback: writes bench/results/<date>.md.
bench:
	$(GO) run ./cmd/relaybench $(BENCH_FLAGS)

# The same harness in a small configuration (under a minute once bin/relay exists).
bench-quick: build
	$(GO) run ./cmd/relaybench -quick -relay-bin $(BIN) -out ""

ci: fmt-check vet test bench-smoke

clean:
	rm -rf bin
