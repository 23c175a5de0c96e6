"""Deploy's Qdrant collections step (roles/qdrant/tasks/collections.yml) against the real control plane: a missing
API key Secret is reported before any request reaches Qdrant, the declared collections are created once, a re-run
lists and creates nothing.

REAL: ansible-playbook with the deploy playbook (Qdrant the only component), the real kube-apiserver (kwok plays the
kubelet: no container runs). EMULATED: Qdrant's REST API (tests/support/qdrant_server.py: qdrant-client's local
mode behind Qdrant's routes; it refuses a request without the api-key header with 401 like the real server).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_playbook
from tests.support.ansible_run import deploy_lab_inventory, recap
from tests.support.qdrant_server import QdrantServer

pytestmark = pytest.mark.slow

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"
KEY = "qdrant-test-key-0123456789"
OFF = ("gpu_runtime", "observability", "ingress", "open_webui", "litellm", "ollama", "vllm", "network_policy")


def test_missing_secret_then_collections_created_once(kube, tmp_path):
    collections = [{"name": "docs", "vector_size": 768}, {"name": "notes", "vector_size": 384, "distance": "Dot"}]
    with QdrantServer(api_key=KEY, collections={"notes": {"size": 384, "distance": "Dot"}}) as qdrant:
        inventory = deploy_lab_inventory(tmp_path, kube, {name: False for name in OFF}, {},
                                         qdrant_collections=collections, qdrant_api_url=qdrant.url,
                                         gpu_lab_gpu_owner="none")
        missing = run_playbook(PLAYBOOK, "-i", inventory, "--tags", "qdrant", check=False)
        assert recap(missing.stdout)[1] == 1, missing.stdout[-3000:]
        assert (f"Secret {kube.namespace}/qdrant-api-key is missing: run the secrets playbook first."
                in missing.stdout), missing.stdout[-3000:]
        assert qdrant.requests == [], "a request went to Qdrant without its key"

        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "qdrant-api-key", "namespace": kube.namespace},
                    "stringData": {"QDRANT__SERVICE__API_KEY": KEY}})
        first = run_playbook(PLAYBOOK, "-i", inventory, "--tags", "qdrant")
        assert recap(first.stdout) == (1, 0), first.stdout[-3000:]   # the one creation
        assert qdrant.requests == [("GET", "/collections"), ("PUT", "/collections/docs")]

        again = run_playbook(PLAYBOOK, "-i", inventory)
        assert recap(again.stdout) == (0, 0), again.stdout[-3000:]
        assert qdrant.requests[2:] == [("GET", "/collections")]
        assert "Report what Qdrant answered to the creations" in again.stdout   # the step ran, its report was skipped
