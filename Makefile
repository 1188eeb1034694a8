# Rookery — build, test, run. `make run` and `make test` are all a fresh
# machine needs (see README.md).
GO        ?= go
BIN       := bin
PKGS      := ./...
GOFLAGS   ?=
export GOFLAGS

.PHONY: all build test test-go deps run proto bench bench-raft bench-fsm bench-mupdate bench-api bench-gateway jepsen jepsen-short crashloop flood fuzz lint vet fmt clean

all: build

## build: compile every binary into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## deps: install the system packages the tests need (Debian's Cyrus, protoc, ...)
deps:
	./scripts/install-deps.sh

## test: every test, including the ones against real Cyrus (installs what they need)
test: deps test-go

test-go:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 30m $(PKGS)

## run: a local three-node cluster on 127.0.0.1 with data under ./data (Ctrl-C stops it)
run: build
	./scripts/run-local.sh

## proto: regenerate the committed gRPC/protobuf code with the pinned generators
proto:
	protoc -I proto \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=proto --go_opt=paths=source_relative \
	  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	  proto/rookery/v1/*.proto

## bench: every benchmark that prints figures (fsm, raft cluster, gRPC API, gateway)
bench: bench-fsm bench-raft bench-api

bench-fsm:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./fsm/

bench-raft:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./cluster/

bench-api:
	$(GO) test -run '^$$' -bench . -timeout 30m ./api/

bench-gateway:
	$(GO) test -run '^$$' -bench . -timeout 30m ./gateway/...

## bench-mupdate: the same MUPDATE load against the real Cyrus master and Rookery, side by side
bench-mupdate: build deps
	ROOKERY_BENCH=$(BIN)/rookery-bench ROOKERYCTL=$(BIN)/rookeryctl ./scripts/bench-mupdate.sh

## jepsen: fault-injection runs with linearizability checking (JEPSEN_RUNS, JEPSEN_TIME, JEPSEN_NEMESIS, JEPSEN_LOG_STORE,
## JEPSEN_READ_MODE, JEPSEN_CLOCK_DRIFT: the clock nemesis, with a rookeryd the test builds with -tags clocknemesis,
## JEPSEN_ROOKERYD_FLAGS: more rookeryd flags for every node, e.g. "-raft.persist_before_replicate -raft.follower_hold 2ms")
jepsen: build
	rk=-rookeryd=$(CURDIR)/$(BIN)/rookeryd; [ -z "$${JEPSEN_CLOCK_DRIFT:-}" ] || rk=; \
	$(GO) test -count=1 -timeout 0 -v -run 'TestJepsen$$' ./jepsen/ -args -runs=$${JEPSEN_RUNS:-5} -time=$${JEPSEN_TIME:-60s} \
		-nemesis=$${JEPSEN_NEMESIS:-} -log-store=$${JEPSEN_LOG_STORE:-} -read-mode=$${JEPSEN_READ_MODE:-} \
		-clock-drift=$${JEPSEN_CLOCK_DRIFT:-0} -rookeryd-flags="$${JEPSEN_ROOKERYD_FLAGS:-}" $$rk

## jepsen-short: the short fault-injection runs that `make test` also runs
jepsen-short:
	$(GO) test -count=1 -v -run 'TestJepsen$$|TestUnsafeStaleReadsAreCaught|TestIsolating' ./jepsen/

## crashloop: CRASHLOOP_ROUNDS (default 100) rounds per log store of write load, kill -9 of all
## three nodes, restart, and a check that every acknowledged write is on every node
crashloop: build
	$(GO) test -count=1 -timeout 0 -v -run 'TestCrashLoop$$' ./jepsen/ -args -crash-rounds=$${CRASHLOOP_ROUNDS:-100} \
		-crash-stores=$${CRASHLOOP_STORES:-bolt,wal} -rookeryd=$(CURDIR)/$(BIN)/rookeryd

## flood: issue 10's login flood against one node while real Cyrus creates mailboxes (ROOKERY_FLOOD_TIME, default 60s)
flood:
	ROOKERY_FLOOD=1 $(GO) test -count=1 -timeout 20m -v -run 'TestLoginFlood$$' ./e2e/

## fuzz: run each fuzz target for FUZZTIME (default 30s)
fuzz:
	./scripts/fuzz.sh $${FUZZTIME:-30s}

## lint: gofmt, go vet, staticcheck
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
