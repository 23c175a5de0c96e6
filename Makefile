# ailab.gpu_lab — every set-up step and every check, from a fresh Debian 12 machine.
#   make test   set up everything (venvs, Debian packages when root) and run every check
# Individual steps: setup lint build sanity compat pytest molecule (see README "Development").
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON      ?= python3
VENV        := $(CURDIR)/.venv
LITELLM_VENV:= $(CURDIR)/.venv-litellm
OPEN_WEBUI_VENV:= $(CURDIR)/.venv-open-webui
LLAMA_STACK_VENV:= $(CURDIR)/.venv-llama-stack
CORE217_VENV:= $(CURDIR)/.venv-core217
COLL_LINK   := .collections/ansible_collections/ailab/gpu_lab
BUILD_DIR   := $(CURDIR)/.build
VERSION     := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL     := $(BUILD_DIR)/ailab-gpu_lab-$(VERSION).tar.gz

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_LOCAL_TEMP := $(CURDIR)/.cache/ansible-tmp
export AILAB_LITELLM_VENV := $(LITELLM_VENV)
export AILAB_OPEN_WEBUI_VENV := $(OPEN_WEBUI_VENV)
export AILAB_LLAMA_STACK_VENV := $(LLAMA_STACK_VENV)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test setup system-deps controlplane test-tools lint build sanity compat pytest molecule bench bench-swap bench-deploy bench-demand demo clean

test: setup lint build sanity compat pytest molecule
	@echo "make test: all checks passed"

setup: $(VENV)/.stamp $(LITELLM_VENV)/.stamp $(OPEN_WEBUI_VENV)/.stamp $(LLAMA_STACK_VENV)/.stamp $(CORE217_VENV)/.stamp $(COLL_LINK) system-deps controlplane test-tools

# A venv is rebuilt only when its requirements file changes (stamp holds its hash).
$(VENV)/.stamp: requirements/dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements/dev.txt
	sha256sum requirements/dev.txt > $@

$(LITELLM_VENV)/.stamp: requirements/litellm.txt
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/litellm.txt
	sha256sum requirements/litellm.txt > $@

# The real Open WebUI for the browser test: open-webui without its dependencies (they pull torch), then what it needs
# here (requirements/open-webui.txt; docs/testing.md "Open WebUI in a real browser").
$(OPEN_WEBUI_VENV)/.stamp: requirements/open-webui.txt tools/open-webui-venv.sh
	PYTHON=$(PYTHON) bash tools/open-webui-venv.sh $(OPEN_WEBUI_VENV)
	sha256sum requirements/open-webui.txt tools/open-webui-venv.sh > $@

# The real Llama Stack server for tests/functional/test_llama_stack.py (requirements/llama-stack.txt).
$(LLAMA_STACK_VENV)/.stamp: requirements/llama-stack.txt
	test -x $(LLAMA_STACK_VENV)/bin/python || $(PYTHON) -m venv $(LLAMA_STACK_VENV)
	$(LLAMA_STACK_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/llama-stack.txt
	sha256sum requirements/llama-stack.txt > $@

# The oldest ansible-core meta/runtime.yml claims, for make compat. Its collections are requirements/dev.txt's
# `ansible` package installed without its dependencies (that package pins ansible-core 2.19): the same
# kubernetes.core, community.general and ansible.posix as .venv, the versions galaxy.yml depends on.
$(CORE217_VENV)/.stamp: requirements/core-2.17.txt requirements/dev.txt
	test -x $(CORE217_VENV)/bin/python || $(PYTHON) -m venv $(CORE217_VENV)
	$(CORE217_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/core-2.17.txt
	grep -E '^ansible==' requirements/dev.txt | $(CORE217_VENV)/bin/pip install --disable-pip-version-check -q --no-deps -r /dev/stdin
	$(CORE217_VENV)/bin/python -c 'import sys, ansible.release as r; sys.exit(not r.__version__.startswith("2.17."))'
	sha256sum requirements/core-2.17.txt requirements/dev.txt > $@

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
# NetworkPolicy engine (tools/netpol-matrix), the Arize Phoenix server's venv, the upstream Go
# sources the exporters' metric names are checked against (tools/upstream-sources.sh), and External
# Secrets Operator's CRDs (tools/external-secrets-crds.sh), and the Neo4j community server's jars from Maven Central
# (tools/neo4j-server.sh).
test-tools:
	bash tools/netpol-matrix.sh
	bash tools/phoenix-venv.sh >/dev/null
	bash tools/upstream-sources.sh
	bash tools/external-secrets-crds.sh >/dev/null
	bash tools/neo4j-server.sh >/dev/null

lint: setup
	ansible-lint --offline --profile production

# $(call install_and_load,<venv bin>,<collections dir>): that Ansible's ansible-galaxy installs the built tarball
# into the directory, then every shipped playbook resolves by FQCN from it (not from the checkout).
define install_and_load
$(1)/ansible-galaxy collection install --offline --no-deps --force -p $(2) $(TARBALL)
test -f $(2)/ansible_collections/ailab/gpu_lab/MANIFEST.json
core=$$($(1)/python -c 'import ansible.release as r; print(r.__version__)'); \
for pb in $(2)/ansible_collections/ailab/gpu_lab/playbooks/*.yml; do \
  [ -e "$$pb" ] || continue; name=$$(basename "$$pb" .yml); \
  ANSIBLE_COLLECTIONS_PATH=$(2) $(1)/ansible-playbook -i localhost, --syntax-check "ailab.gpu_lab.$$name" >/dev/null \
    || { echo "playbook ailab.gpu_lab.$$name does not load from the installed collection (ansible-core $$core)" >&2; exit 1; }; \
  echo "ailab.gpu_lab.$$name: loads by FQCN from the installed tarball (ansible-core $$core)"; \
done
endef

build: setup
	rm -rf $(BUILD_DIR) && mkdir -p $(BUILD_DIR)
	ansible-galaxy collection build --force --output-path $(BUILD_DIR) .
	$(call install_and_load,$(VENV)/bin,$(BUILD_DIR)/collections)

# ansible-test sanity runs inside the installed copy of the built tarball.
sanity: build
	bash tools/sanity.sh $(BUILD_DIR)/collections/ansible_collections/ailab/gpu_lab

# ansible-core 2.17, the oldest meta/runtime.yml claims (README "Supported Ansible versions"): 2.17's ansible-galaxy
# installs the tarball, every playbook loads by FQCN with 2.17's ansible-playbook, 2.17's ansible-test sanity runs in
# that copy, and COMPAT_TESTS run with pytest from .venv-core217 (the tests start the ansible-playbook beside their
# python). pep8 and pylint are skipped on 2.17: they judge style and type inference with the tool versions each
# ansible-test pins (pycodestyle 2.11.1 / pylint 3.1.0 in 2.17, 2.13.0 / 3.3.7 in 2.19), not what ansible-core 2.17
# accepts; make sanity runs them (2.17's older astroid also reports a value it cannot narrow as None in deploy.py).
COMPAT_TESTS := \
  tests/functional/test_gpu_swap_playbook.py::test_every_transition_ends_right_and_repeats_change_nothing \
  tests/functional/test_gpu_swap_playbook.py::test_status_and_check_mode_change_nothing \
  tests/functional/test_gpu_swap_playbook.py::test_target_never_ready_restores_the_previous_owner \
  tests/functional/test_gpu_swap_playbook.py::test_bad_target_fails_without_asking_any_cluster \
  tests/functional/test_secrets_playbook.py::test_converge_then_idempotent_with_stable_generated_values \
  tests/functional/test_secrets_playbook.py::test_check_mode_reports_and_writes_nothing \
  tests/functional/test_secrets_playbook.py::test_vvv_diff_output_and_temp_files_hold_no_secret_value \
  tests/functional/test_deploy_playbook.py::test_render_mode_writes_a_valid_tree_for_the_example_lab \
  tests/functional/test_deploy_playbook.py::test_bad_inventory_input_fails_first_naming_each_variable \
  tests/functional/test_deploy_apply.py::test_deploy_applies_the_rendered_tree_as_one_applyset_and_a_rerun_writes_nothing \
  tests/functional/test_provision_playbook.py::test_check_diff_on_a_fresh_host_shows_the_files_and_changes_nothing \
  tests/functional/test_gpu_capacity_module.py::test_reports_holder_then_requirement_fails_naming_it \
  tests/functional/test_gpu_capacity_module.py::test_host_view_reports_a_game_kubernetes_cannot_see \
  tests/functional/test_neo4j_schema.py::test_schema_applies_then_a_second_run_changes_nothing \
  tests/functional/test_litellm_playbook.py::test_module_and_filters_through_ansible_playbook \
  tests/functional/test_litellm_playbook.py::test_module_rejection_through_ansible_playbook \
  tests/functional/test_model_pull_playbook.py::test_progress_is_shown_while_a_slow_pull_runs \
  tests/functional/test_model_pull_playbook.py::test_check_mode_and_diff_through_ansible \
  tests/functional/test_model_pull_playbook.py::test_hf_token_never_appears_even_at_vvv

compat: build $(CORE217_VENV)/.stamp
	rm -rf $(BUILD_DIR)/core217
	$(call install_and_load,$(CORE217_VENV)/bin,$(BUILD_DIR)/core217)
	PATH=$(CORE217_VENV)/bin:$$PATH bash tools/sanity.sh $(BUILD_DIR)/core217/ansible_collections/ailab/gpu_lab \
	  --skip-test pep8 --skip-test pylint
	$(CORE217_VENV)/bin/python -m pytest -n 2 $(COMPAT_TESTS)

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

# gpu_demand: what a request held by the gateway waits beyond its target's Ready time (docs/gpu_demand.md), then
# the fast path's hand-over time with the vLLM stand-in (vLLM sleep mode, docs/gpu_swap.md).
bench-demand: setup
	python -m tests.bench.bench_demand
	python -m tests.bench.bench_swap_sleep

# deploy: its idempotent re-run vs kubectl apply --server-side of the same rendered manifests (docs/deploy.md).
bench-deploy: setup
	python -m tests.bench.bench_deploy

# The example lab end to end without a GPU: render, validate, apply to the local control plane, summary.
demo: setup
	bash tools/demo.sh

clean:
	rm -rf $(BUILD_DIR) .collections .cache .pytest_cache
