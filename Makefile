# ailab.gpu_lab — every set-up step and every check, from a fresh Debian 12 machine.
#   make test   set up everything (venvs, Debian packages when root) and run every check
# Individual steps: setup lint build sanity pytest molecule (see README "Development").
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON      ?= python3
VENV        := $(CURDIR)/.venv
LITELLM_VENV:= $(CURDIR)/.venv-litellm
COLL_LINK   := .collections/ansible_collections/ailab/gpu_lab
BUILD_DIR   := $(CURDIR)/.build
VERSION     := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL     := $(BUILD_DIR)/ailab-gpu_lab-$(VERSION).tar.gz

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_LOCAL_TEMP := $(CURDIR)/.cache/ansible-tmp
export AILAB_LITELLM_VENV := $(LITELLM_VENV)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test setup system-deps controlplane test-tools lint build sanity pytest molecule bench bench-swap bench-deploy demo clean

test: setup lint build sanity pytest molecule
	@echo "make test: all checks passed"

setup: $(VENV)/.stamp $(LITELLM_VENV)/.stamp $(COLL_LINK) system-deps controlplane test-tools

# A venv is rebuilt only when its requirements file changes (stamp holds its hash).
$(VENV)/.stamp: requirements/dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements/dev.txt
	sha256sum requirements/dev.txt > $@

$(LITELLM_VENV)/.stamp: requirements/litellm.txt
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/litellm.txt
	sha256sum requirements/litellm.txt > $@

# The checkout itself, visible to Ansible as ailab.gpu_lab (ansible.cfg collections_path).
$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

system-deps:
	bash tools/system-deps.sh

# The real Kubernetes control plane the tests run (docs/testing.md): built once per pinned
# version from the Go module proxy into ~/.cache/ailab-gpu_lab, linked as .cache/controlplane.
controlplane:
	bash tools/controlplane/build.sh

# The other real tools the tests drive, built once (not raced by two pytest workers): cyclonus's
# NetworkPolicy engine (tools/netpol-matrix), the Arize Phoenix server's venv, and the upstream Go
# sources the exporters' metric names are checked against (tools/upstream-sources.sh).
test-tools:
	bash tools/netpol-matrix.sh
	bash tools/phoenix-venv.sh >/dev/null
	bash tools/upstream-sources.sh

lint: setup
	ansible-lint --offline --profile production

build: setup
	rm -rf $(BUILD_DIR) && mkdir -p $(BUILD_DIR)
	ansible-galaxy collection build --force --output-path $(BUILD_DIR) .
	ansible-galaxy collection install --offline --no-deps --force -p $(BUILD_DIR)/collections $(TARBALL)
	test -f $(BUILD_DIR)/collections/ansible_collections/ailab/gpu_lab/MANIFEST.json
	# Every shipped playbook resolves by FQCN from the installed tarball (not from the checkout).
	for pb in $(BUILD_DIR)/collections/ansible_collections/ailab/gpu_lab/playbooks/*.yml; do \
	  [ -e "$$pb" ] || continue; name=$$(basename "$$pb" .yml); \
	  ANSIBLE_COLLECTIONS_PATH=$(BUILD_DIR)/collections ansible-playbook -i localhost, --syntax-check "ailab.gpu_lab.$$name" >/dev/null \
	    || { echo "playbook ailab.gpu_lab.$$name does not load from the installed collection" >&2; exit 1; }; \
	  echo "ailab.gpu_lab.$$name: loads by FQCN from the installed tarball"; \
	done

# ansible-test sanity runs inside the installed copy of the built tarball.
sanity: build
	bash tools/sanity.sh $(BUILD_DIR)/collections/ansible_collections/ailab/gpu_lab

pytest: setup
	python -m pytest -n 2 tests/unit tests/functional

molecule: setup
	bash tools/molecule-all.sh

# Gateway overhead: direct vs through the real LiteLLM proxy (prints p50/p95, TTFT; docs/litellm.md).
bench: setup
	python -m tests.bench.bench_gateway

# GPU swap: orchestration overhead (whole run minus condition waits) and Ready -> end (docs/gpu_swap.md).
bench-swap: setup
	python -m tests.bench.bench_swap

# deploy: its idempotent re-run vs kubectl apply --server-side of the same rendered manifests (docs/deploy.md).
bench-deploy: setup
	python -m tests.bench.bench_deploy

# The example lab end to end without a GPU: render, validate, apply to the local control plane, summary.
demo: setup
	bash tools/demo.sh

clean:
	rm -rf $(BUILD_DIR) .collections .cache .pytest_cache
