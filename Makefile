# hyperfunc build, test and run targets. Go comes from /usr/local/go, where
# scripts/install-go.sh puts it on a machine without it (Debian's own Go is
# too old); it goes first on PATH so an older system go does not shadow it.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
LDFLAGS := -s -w

.PHONY: all toolchain build test test-unit e2e check bench dev stop chaos e2e-nomad fuzz clean docker

all: build

# Installs Go when go.mod's version is not there (as root; fast when it is).
toolchain:
	@bash scripts/install-go.sh

build: toolchain
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/hyperfunc ./cmd/hyperfunc
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/hyper ./cmd/hyper
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/hf-shim ./cmd/hf-shim

# docker installs (Debian packages) and starts what the tests and the dev
# agent need: dockerd with runsc, bridge none, iptables off, and a loopback
# registry mirror holding the stand-in images of the walkthrough.
docker:
	bash scripts/setup-docker.sh

# The whole suite, race detector on, real Docker with runsc included, never
# from the test cache (-count=1). The disruptive tests restart the shared
# dockerd, so they run alone, after the rest, whether or not the rest
# passed; make test fails when either stage failed.
test: toolchain docker
	@status=0; \
	echo '$(GO) test -race -count=1 -timeout 20m ./... ./e2e/testdata/imagemagick'; \
	$(GO) test -race -count=1 -timeout 20m ./... ./e2e/testdata/imagemagick || status=1; \
	echo 'HYPERFUNC_DISRUPTIVE=1 $(GO) test -race -count=1 -p 1 -timeout 5m ./e2e/disruptive/'; \
	HYPERFUNC_DISRUPTIVE=1 $(GO) test -race -count=1 -p 1 -timeout 5m ./e2e/disruptive/ || status=1; \
	if [ $$status -ne 0 ]; then echo 'make test: FAILED (see above)'; fi; \
	exit $$status

test-unit: toolchain
	$(GO) test -race -short ./...

check: toolchain
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	@if command -v golangci-lint >/dev/null; then golangci-lint run ./...; else echo "golangci-lint not installed: skipped"; fi
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

# Benchmarks print ratios side by side; results go into docs/BENCHMARKS.md.
bench: docker build
	bash scripts/bench.sh

# One-node agent on the local engine, then a first call.
dev: docker build
	bash scripts/dev.sh

stop:
	bash scripts/dev.sh stop

chaos: build
	$(GO) test -race -count=1 -timeout 0 -run TestChaos ./e2e/chaos -chaos.duration=$${DURATION:-2m} -chaos.strict -v

e2e-nomad: build
	$(GO) test -v -count=1 ./e2e/nomad/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./fsm
	$(GO) test -run '^$$' -fuzz FuzzDecodeEnvelope -fuzztime 30s ./shim

clean:
	rm -rf $(BIN)
