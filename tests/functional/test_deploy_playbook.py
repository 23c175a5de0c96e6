"""The deploy playbook through the real ansible-playbook, without a cluster: render mode of the example
lab (validated by the real kubectl kustomize and kubernetes-validate --strict; the GPU image pre-pull
rendered with exactly the backends' images and nodes, and left out when both backends are off), and
bad inventory input failing in the first task, before any cluster is contacted. The runs against the
real control plane are molecule/deploy and tests/functional/test_deploy_prepull.py."""

import json
import re
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.support.validate_render import validate

PLAYBOOK = Path(REPO) / "playbooks" / "deploy.yml"


def _objects(render):
    out = {}
    for path in sorted((render / "k8s").glob("*/*.yaml")):
        if path.name in ("kustomization.yaml", "config.yaml"):
            continue
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def test_render_mode_writes_a_valid_tree_for_the_example_lab(tmp_path, playbook_runner):
    render = tmp_path / "rendered"
    proc = playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                           "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=vllm:qwen2.5-7b")
    assert "changed=" in proc.stdout
    summary = validate(str(render), out=lambda line: None)
    mine = ["lab", "gpu_runtime", "qdrant", "litellm", "ollama", "vllm", "open_webui"]  # (issue 11 adds its own)
    assert set(mine) <= set(summary["components"])
    top = yaml.safe_load((render / "k8s" / "kustomization.yaml").read_text())
    assert [r for r in top["resources"] if r in mine] == mine
    # one directory per component, then the ApplySet's parent (docs/deploy.md "One apply")
    assert sorted(top["resources"][:-1]) == summary["components"] and top["resources"][-1] == "applyset.yaml"
    assert top["resources"][-2] == "gpu_prepull"   # the images' pre-pull comes last (and is validated above)

    objs = _objects(render)
    vllm, ollama = objs[("Deployment", "vllm")], objs[("Deployment", "ollama")]
    # the inventory's owner decides the replicas; nothing is read from a cluster
    assert (vllm["spec"]["replicas"], ollama["spec"]["replicas"]) == (1, 0)
    # the fields both GPU backends share are the same, because one function builds them
    for path in (("spec", "strategy"), ("spec", "template", "spec", "runtimeClassName"),
                 ("spec", "template", "spec", "nodeSelector"), ("spec", "template", "spec", "enableServiceLinks"),
                 ("spec", "template", "spec", "securityContext")):
        a, b = vllm, ollama
        for key in path:
            a, b = a[key], b[key]
        assert a == b, path
    assert vllm["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia-cdi"
    # one load budget per backend, carried whole by the startup probe (vLLM 900 s, Ollama 300 s by default)
    for dep, budget in ((vllm, 900), (ollama, 300)):
        container = dep["spec"]["template"]["spec"]["containers"][0]
        probe = container["startupProbe"]
        assert probe["failureThreshold"] * probe["periodSeconds"] == budget
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert_prepull_matches(objs, [ollama, vllm])
    assert vllm["spec"]["template"]["spec"]["containers"][0]["args"][:6] == [
        "--model", "Qwen/Qwen2.5-7B-Instruct-AWQ", "--revision", "b25037543e9394b818fdfca67ab2a00ecc7dd641",
        "--served-model-name", "qwen2.5-7b"]
    chart = objs[("HelmChart", "nvidia-device-plugin")]
    assert chart["metadata"]["namespace"] == "kube-system" and chart["spec"]["failurePolicy"] == "abort"
    assert yaml.safe_load(chart["spec"]["valuesContent"]) == {
        "runtimeClassName": "nvidia-cdi", "deviceIDStrategy": "index", "deviceListStrategy": "envvar"}
    # secrets are references only: no Secret object, every secret env var a secretKeyRef
    assert not [k for k in objs if k[0] == "Secret"]
    webui_env = objs[("Deployment", "open-webui")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in webui_env if "valueFrom" in e} == {
        "OPENAI_API_KEY", "WEBUI_SECRET_KEY", "QDRANT_API_KEY", "RAG_OPENAI_API_KEY"}
    # Open WebUI sends its own gateway key, never the master key: the Secret the secrets playbook writes for it, which
    # the gateway admits (docs/litellm.md "Keys")
    from ansible_collections.ailab.gpu_lab.plugins.module_utils.dotenv_secrets import litellm_key_secret
    secret, key, env_name = litellm_key_secret("open-webui")
    assert [e["valueFrom"]["secretKeyRef"] for e in webui_env if e["name"].endswith("OPENAI_API_KEY")] == [
        {"name": secret, "key": key}] * 2
    gateway_env = {e["name"]: e
                   for e in objs[("Deployment", "litellm")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert gateway_env[env_name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key, "optional": True}
    # the owner record is the cluster's, never rendered (an apply of the tree would undo a swap)
    assert ("ConfigMap", "gpu-lab-state") not in objs


def test_the_built_in_strategy_renders_the_same_tree_without_the_deprecation_warning(tmp_path, playbook_runner):
    """-e gpu_lab_deploy_strategy=ansible.builtin.linear (docs/deploy.md): the same objects, byte for byte; ansible-core
    2.19's deprecation warning about third-party strategies only with the collection's."""
    outputs, trees = {}, {}
    for strategy in ("ailab.gpu_lab.linear", "ansible.builtin.linear"):
        render = tmp_path / strategy
        extra = ["-e", f"gpu_lab_deploy_strategy={strategy}"] if strategy.startswith("ansible.") else []
        outputs[strategy] = playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                                            "-e", f"gpu_lab_render_dir={render}", *extra).stdout
        trees[strategy] = {str(p.relative_to(render)): p.read_bytes() for p in sorted(render.rglob("*")) if p.is_file()}
    assert trees["ailab.gpu_lab.linear"] == trees["ansible.builtin.linear"] and len(trees["ansible.builtin.linear"]) > 20
    warning = "Use of strategy plugins not included in ansible.builtin are deprecated"
    assert warning not in outputs["ansible.builtin.linear"]
    import ansible  # pylint: disable=import-outside-toplevel
    if tuple(int(n) for n in ansible.__version__.split(".")[:2]) >= (2, 19):   # 2.17 and 2.18 do not warn
        assert warning in " ".join(outputs["ailab.gpu_lab.linear"].split())


def assert_prepull_matches(objs, deployments):
    """The pre-pull DaemonSet pulls exactly the Deployments' images with their pull policies, on their nodes."""
    prepull = objs[("DaemonSet", "gpu-image-prepull")]
    pod = prepull["spec"]["template"]["spec"]
    backends = [d["spec"]["template"]["spec"] for d in deployments]
    assert [(c["image"], c["imagePullPolicy"]) for c in pod["initContainers"]] == [
        (b["containers"][0]["image"], b["containers"][0]["imagePullPolicy"]) for b in backends]
    for backend in backends:   # the backends' node selection, without the hostname pin a swap may move
        unpinned = {k: v for k, v in backend["nodeSelector"].items() if k != "kubernetes.io/hostname"}
        assert pod["nodeSelector"] == unpinned
        assert pod.get("tolerations", []) == backend.get("tolerations", [])
    assert "nvidia.com/gpu" not in yaml.safe_dump([c.get("resources") for c in pod["initContainers"] + pod["containers"]])
    assert "runtimeClassName" not in pod and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in pod["initContainers"] + pod["containers"])
    assert prepull["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ai-lab"


def test_render_without_gpu_backends_has_no_image_prepull(tmp_path, playbook_runner):
    """Both backends off: no DaemonSet and no gpu_prepull tree; one backend on: its image only."""
    render = tmp_path / "rendered"
    playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                    "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=none",
                    "-e", json.dumps({"gpu_lab_components": {"vllm": False, "ollama": False}}))
    top = yaml.safe_load((render / "k8s" / "kustomization.yaml").read_text())
    assert "gpu_prepull" not in top["resources"] and not (render / "k8s" / "gpu_prepull").exists()
    assert not [k for k in _objects(render) if k[0] == "DaemonSet"]

    render = tmp_path / "ollama-only"
    playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", "gpu_lab_render_only=true",
                    "-e", f"gpu_lab_render_dir={render}", "-e", "gpu_lab_gpu_owner=ollama",
                    "-e", json.dumps({"gpu_lab_components": {"vllm": False},
                                      "ollama_tolerations": [{"key": "gpu", "operator": "Exists"}]}))
    validate(str(render), out=lambda line: None)
    objs = _objects(render)
    assert_prepull_matches(objs, [objs[("Deployment", "ollama")]])


def test_bad_inventory_input_fails_first_naming_each_variable(tmp_path, playbook_runner):
    extra = {"gpu_lab_components": {"grafana": True, "open_webui": False}, "gpu_lab_gpu_owner": "vllm:qwen3",
             "ollama_storage_size": "100GB", "qdrant_backup_tier": "weekly",
             "gpu_lab_kubeconfig": str(tmp_path / "no-such-kubeconfig")}
    proc = playbook_runner(PLAYBOOK, "-i", "inventory/example", "-e", json.dumps(extra), check=False)
    assert proc.returncode != 0
    out = proc.stdout
    assert "Check every deploy input before anything is applied" in out
    for line in ("gpu_lab_components: 'grafana' is not a component",
                 "gpu_lab_gpu_owner: 'vllm:qwen3': 'qwen3' is not a vLLM alias of gpu_lab_models; vLLM aliases: qwen2.5-7b",
                 "ollama_storage_size: '100GB' is not a Kubernetes quantity",
                 "qdrant_backup_tier: 'weekly' is not a backup tier"):
        assert line in out, line
    # the check is the first task after the agent filter: nothing ran after it, no cluster was contacted
    tasks = re.findall(r"^TASK \[([^\]]+)\]", out, re.M)
    assert tasks == ["Deploy from the k3s server hosts only (an agent shares its server's cluster)",
                     "ailab.gpu_lab.lab : Validating arguments against arg spec 'main' - The lab namespace, the recorded "
                     "GPU owner and the early check of every deploy input",
                     "ailab.gpu_lab.lab : Check the argument spec of each component role first (its problems are "
                     "reported by the next task)",
                     "ailab.gpu_lab.lab : Check every deploy input before anything is applied"]
    assert "changed=0" in out and "failed=1" in out
