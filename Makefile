# Thin aliases for the scripts; each installs what it needs.
.PHONY: demo test test-fast fuzz bench build-x86_64 build-arm64 tools

demo:            ## The enforcer's main job, locally, against the emulators
	scripts/demo

test:            ## The whole test suite (what CI runs)
	scripts/test

test-fast:       ## The fast tier: unit tests, the decision table, adapters, properties, docs
	scripts/test-fast

FUZZ_SECONDS ?= 600
fuzz:            ## Fuzz the event and retry-policy parsers, FUZZ_SECONDS each (default 600)
	scripts/fuzz $(FUZZ_SECONDS)

bench:           ## The benchmark suite with Cloud Custodian beside it; writes target/bench/results.{md,json}
	scripts/bench

build-x86_64:    ## sam build of the Lambda for x86_64
	scripts/build-lambda x86_64

build-arm64:     ## sam build for arm64 (from x86_64: needs `rustup target add aarch64-unknown-linux-gnu`)
	scripts/build-lambda arm64

tools:           ## Install the pinned emulators and tools into .tools/
	scripts/setup-tools
