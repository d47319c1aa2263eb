# zkrecipes: the two commands are `make demo` and `make test`.
GO       ?= go
GOBIN    := $(shell $(GO) env GOPATH)/bin
PKGS     := ./...
TIMEOUT  ?= 40m

.PHONY: test demo deps deps-zk fmt-check vet staticcheck unit bench chaos

## test: install what is missing, then gofmt check, go vet, staticcheck and the race-enabled tests against real ZooKeeper
## (TEST_P packages at a time, 2 by default: each package starts its own 3-node ensemble on its own ports,
## so no two packages share a server; TEST_P=1 runs them one at a time)
TEST_P ?= 2
test: deps fmt-check vet staticcheck
	$(GO) test -race -count=1 -p $(TEST_P) -timeout $(TIMEOUT) $(PKGS)

## demo: the main job. Without ZK_SERVERS each program starts a local 3-node ensemble
## behind fault proxies; with ZK_SERVERS only the programs that need no faults run.
demo: deps-zk
ifeq ($(strip $(ZK_SERVERS)),)
	$(GO) run ./examples/session-states
	$(GO) run ./examples/lock
	$(GO) run ./examples/election
	$(GO) run ./examples/registry
	$(GO) run ./examples/showcase
else
	$(GO) run ./examples/lock
	$(GO) run ./examples/registry
	@echo "To watch live session transitions or an election on $(ZK_SERVERS) (Ctrl-C to stop):"
	@echo "  ZK_SERVERS=$(ZK_SERVERS) go run ./examples/session-states"
	@echo "  ZK_SERVERS=$(ZK_SERVERS) go run ./examples/election"
endif

deps:
	@scripts/install-deps.sh all

deps-zk:
	@scripts/install-deps.sh zk

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GOBIN)/staticcheck $(PKGS)

## unit: the tests that need no ZooKeeper
unit:
	$(GO) test -short -count=1 $(PKGS)

## bench: the benchmarks, with ratios against plain go-zookeeper/zk
bench: deps-zk
	scripts/bench.sh

## chaos: every recipe together under a seeded fault schedule, then the checker (make chaos DURATION=10m SEED=7);
## the run's timeline goes to CHAOS_OUT (chaos-timeline.html and .svg), whose paths are printed last
DURATION  ?= 2m
SEED      ?= 1
CHAOS_OUT ?= $(or $(TMPDIR),/tmp)/zkrecipes-chaos-$(SEED)
chaos: deps-zk
	@status=0; $(GO) test -count=1 -timeout 0 -run 'TestChaos$$' -v ./chaos/ -args -chaos.duration=$(DURATION) -chaos.seed=$(SEED) -chaos.out=$(CHAOS_OUT) || status=$$?; \
	echo "timeline: $(CHAOS_OUT)/chaos-timeline.html"; echo "timeline: $(CHAOS_OUT)/chaos-timeline.svg"; exit $$status
