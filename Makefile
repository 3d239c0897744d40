# hyperfunc build, test and run targets. Go comes from /usr/local/go, where
# scripts/install-go.sh puts it on a machine without it (Debian's own Go is
# too old); it goes first on PATH so an older system go does not shadow it.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
LDFLAGS := -s -w

.PHONY: all toolchain build test test-unit e2e check bench dev stop chaos e2e-nomad fuzz clean docker chromium screenshots

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

# Debian's chromium, for the web UI's headless browser tests (e2e/ui).
chromium:
	bash scripts/setup-chromium.sh

# The UI's screenshots in docs/screenshots/ (the README shows one), taken by its e2e
# test in headless chromium against a real agent.
screenshots: toolchain docker chromium
	$(GO) test -count=1 -run TestUI ./e2e/ui -ui.screenshots=$(CURDIR)/docs/screenshots

# The whole suite, race detector on, real Docker with runsc included, never
# from the test cache (-count=1). A real Nomad dev agent
# (scripts/nomad-dev.sh; exit 3: no binary, the real-Nomad tests then skip
# loudly, or fail with CI=true) runs beside the suite with NOMAD_ADDR
# exported, and is stopped afterwards, also on failure. The disruptive tests
# restart the shared dockerd, so they run alone, after the rest, whether or
# not the rest passed; make test fails when either stage failed.
test: toolchain docker chromium
	@status=0; addr=; rc=0; out=$$(bash scripts/nomad-dev.sh start) || rc=$$?; \
	case $$rc in 0) addr=$${out#NOMAD_ADDR=};; 3) echo "==> no Nomad binary: the real-Nomad tests skip (and fail with CI=true)";; *) exit $$rc;; esac; \
	trap 'bash scripts/nomad-dev.sh stop' EXIT; \
	echo "==> NOMAD_ADDR=$$addr"; \
	echo '$(GO) test -race -count=1 -timeout 20m ./... ./e2e/testdata/imagemagick'; \
	NOMAD_ADDR=$$addr $(GO) test -race -count=1 -timeout 20m ./... ./e2e/testdata/imagemagick || status=1; \
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

# NOMAD=real runs the calls on a real Nomad agent (NOMAD_ADDR, else a dev
# agent started and stopped here) instead of the double.
chaos: build
	@set -e; if [ "$${NOMAD:-double}" = real ] && [ -z "$$NOMAD_ADDR" ]; then \
	out=$$(bash scripts/nomad-dev.sh start); export NOMAD_ADDR=$${out#NOMAD_ADDR=}; trap 'bash scripts/nomad-dev.sh stop' EXIT; fi; \
	$(GO) test -race -count=1 -timeout 0 -run TestChaos ./e2e/chaos -chaos.duration=$${DURATION:-2m} -chaos.strict -chaos.nomad=$${NOMAD:-double} -v

# The real-Nomad suites alone, against NOMAD_ADDR or a dev agent started
# (and stopped) here.
e2e-nomad: build
	@set -e; if [ -z "$$NOMAD_ADDR" ]; then out=$$(bash scripts/nomad-dev.sh start); export NOMAD_ADDR=$${out#NOMAD_ADDR=}; \
	trap 'bash scripts/nomad-dev.sh stop' EXIT; fi; \
	$(GO) test -v -count=1 -run 'Real|Conformance' ./nomadjob/ && $(GO) test -v -count=1 ./e2e/nomad/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./fsm
	$(GO) test -run '^$$' -fuzz FuzzDecodeEnvelope -fuzztime 30s ./shim

clean:
	rm -rf $(BIN)
