# The README's entry points: `make demo` and `make test` (and `make test-unit`, `make fresh-check`).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test test-unit fresh-check deps deps-build deps-vm build lint bench

# Debian packages: `deps-build` for compiling (any user), `deps` also for the demo and the
# privileged tests (root, or sudo, when something is missing).
deps:
	./scripts/install-deps.sh all

deps-build:
	./scripts/install-deps.sh build

# qemu and what the Debian-kernel VM harness needs (crates/vmkernel's boot test runs in `make test`).
deps-vm:
	./scripts/install-deps.sh vm

build: deps
	$(CARGO) build --release --bins

# A whole flannel-rs cluster on this machine (network namespaces, real etcd, the flannel CNI
# plugin): 3 hosts with vxlan, then host-gw, then udp, each with its all-pairs pod ping
# matrix, torn down after; fails if any pair is unreachable. Root. See docs/lab.md.
demo: build
	./target/release/flannelctl lab demo \
		--flanneld ./target/release/flanneld --cni-plugin ./target/release/flannel

lint: deps-build
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# What needs no root and no service, as any user: formatting, lints, and the unit, property
# and golden tests (scripts/unit-tests.sh says which test files those are).
test-unit: lint
	./scripts/unit-tests.sh

# Everything: formatting, lints, unit/property/golden tests, and the privileged tests against
# a real etcd and the real kernel (in private network namespaces). Needs root.
test: deps deps-vm lint
	$(CARGO) test --workspace --no-fail-fast

# `make demo` on a replica of a brand-new machine (debootstrap + the image's packages, built
# once under /var/tmp), in a clean clone of HEAD, then the README's lab commands as written:
# proves the README's set-up is complete. Root. FRESH_TARGETS="demo test" to check more.
# See scripts/fresh-check.sh.
FRESH_TARGETS ?= demo
FRESH_AFTER ?= scripts/readme-lab-check.sh
fresh-check:
	FRESH_AFTER=$(FRESH_AFTER) ./scripts/fresh-check.sh $(FRESH_TARGETS)

# Benchmarks of flanneld's datapath against an iproute2 floor, lease propagation and memory
# (root; private network namespaces; a few minutes). See docs/benchmarks.md.
bench: deps
	$(CARGO) build --release -p flanneld -p flannel-bench
	./target/release/flannel-bench all

# Every parser fuzzed for FUZZ_SECONDS (default 30) each from its seed corpus (docs/fuzzing.md).
# Phony: the directory fuzz/ would otherwise count as the target, always up to date.
.PHONY: fuzz
fuzz:
	./scripts/fuzz.sh

# The privileged e2e suite once more, inside one qemu guest on Debian's packaged kernel
# (Debian 12: 6.1), with this machine's root shared in (root; see docs/kernels.md).
.PHONY: test-kernels
test-kernels: deps deps-vm
	./scripts/test-kernels.sh
