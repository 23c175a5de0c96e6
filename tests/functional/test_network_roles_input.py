"""Bad input to the monitoring, ingress and network_policy roles fails in their first task (the
argument spec, or the role's own rule for what a spec cannot express: the same rule the deploy playbook's
early check runs first, tests/unit/data/deploy_cases.yml), naming the variable and the fix, before anything
is written.

REAL: ansible-playbook running each role (``rendered`` state, so the proof that nothing was written
is the empty render directory).
"""

import pytest

from tests.support.deploy_render import render_roles

CASES = [
    ("ingress", {"gpu_lab_tailnet_ip": "192.168.1.20"},
     ["ingress_tailnet_ip", "100.64.0.0/10", "got '192.168.1.20'"]),
    ("ingress", {"gpu_lab_tailnet_ip": "203.0.113.7"}, ["got '203.0.113.7'"]),
    ("ingress", {"gpu_lab_tailnet_name": "not a name"}, ["ingress_hostname", "got 'not a name'"]),
    ("ingress", {"ingress_tls_source": "files"}, ["ingress_tls_cert_file and", "ingress_tls_key_file"]),
    ("monitoring", {"monitoring_alert_gpu_memory_ratio": 97}, ["monitoring_alert_gpu_memory_ratio: 97 is not a fraction in (0, 1]"]),
    ("monitoring", {"monitoring_dashboards": ["gpu", "gamez"]}, ["monitoring_dashboards must be one or more of: gpu, vllm, gateway", "gamez"]),
    ("network_policy", {"network_policy_internet_except": ["10.0.0.0/8", "everything"]},
     ["network_policy_internet_except: 'everything' is not an IPv4 CIDR such as 10.0.0.0/8"]),
]


@pytest.mark.parametrize("role,bad,messages", CASES, ids=[f"{c[0]}-{sorted(c[1])[0]}" for c in CASES])
def test_bad_input_fails_first_naming_the_variable(tmp_path, role, bad, messages):
    out = render_roles(tmp_path, [role], bad, expect_failure=True)
    for message in messages:
        assert message in out, out[-3000:]
    assert not (tmp_path / role).exists(), "the role wrote files before failing"
