# The two entry points of the README: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps build lint

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bins

# A whole flannel-rs cluster on this machine (network namespaces, real etcd, the flannel CNI
# plugin): 3 hosts with vxlan, then with host-gw, each with its all-pairs pod ping matrix, torn
# down after; fails if any pair is unreachable. See docs/lab.md (`flannelctl lab`).
demo: build
	./target/release/flannelctl lab demo \
		--flanneld ./target/release/flanneld --cni-plugin ./target/release/flannel

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Everything: formatting, lints, unit/property/golden tests, and the privileged tests against
# a real etcd and the real kernel (in private network namespaces). Needs root.
test: deps lint
	$(CARGO) test --workspace --no-fail-fast

# Benchmarks of flanneld's datapath against an iproute2 floor, lease propagation and memory
# (root; private network namespaces; a few minutes). See docs/benchmarks.md.
.PHONY: bench
bench: deps
	$(CARGO) build --release -p flanneld -p flannel-bench
	./target/release/flannel-bench all

# The privileged e2e suite once more, inside one qemu guest on Debian's packaged kernel
# (Debian 12: 6.1), with this machine's root shared in (root; see docs/kernels.md).
.PHONY: test-kernels
test-kernels: deps
	./scripts/install-deps.sh vm
	./scripts/test-kernels.sh
