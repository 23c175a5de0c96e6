# -*- coding: utf-8 -*-
# Copyright: ailab.gpu_lab contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the deploy playbook: early input checks, the GPU owner, labels, the one pod shape of every
workload, the GPU backend Deployment and the DaemonSet that pre-pulls the backends' images.

Each filter is documented in the YAML file of the same name beside this plugin; the logic
lives in module_utils/deploy.py (one place for what vLLM and Ollama share).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ailab.gpu_lab.plugins.module_utils import catalog as _catalog
from ansible_collections.ailab.gpu_lab.plugins.module_utils import deploy as _deploy
from ansible_collections.ailab.gpu_lab.plugins.plugin_utils.filters import filter_map


def deploy_validate(inputs):
    """Check every deploy input at once; return {components, owner, models}."""
    return _deploy.validate_deploy(inputs)


def deploy_input_errors(values, role):
    """The problems a component role's own input rule finds (the rule deploy_validate also runs first)."""
    return _deploy.role_input_errors(role, values)


def deploy_gpu_owner(value, models):
    """Initial GPU owner string -> {owner, model}."""
    return _deploy.parse_gpu_owner(value, _catalog.validate_catalog(models))


def deploy_labels(name, component, app_instance=None):
    """The standard app.kubernetes.io labels of an object of the lab."""
    return _deploy.standard_labels(name, component, app_instance)


def deploy_selector(name, app_instance=None):
    """The selector labels of a workload."""
    return _deploy.selector_labels(name, app_instance)


def deploy_memory_plus(resources, extra):
    """Resources with ``extra`` added to the memory request and limit."""
    return _deploy.memory_plus(resources, extra)


def deploy_apply_diff(registered):
    """The changed objects of a registered kubernetes.core.k8s result with their before/after."""
    return _deploy.apply_diff(registered)


def deploy_workload(spec):
    """A Deployment, StatefulSet or DaemonSet of the lab in the one pod shape (shared fields set in one place)."""
    return _deploy.workload(spec)


def deploy_gpu_deployment(spec):
    """The Deployment of a GPU backend (shared fields set in one place)."""
    return _deploy.gpu_backend_deployment(spec)


def deploy_gpu_image_prepull(spec):
    """The DaemonSet that pulls the GPU backends' images on the nodes they can run on."""
    return _deploy.gpu_image_prepull_daemonset(spec)


class FilterModule(object):
    """Deploy filters."""

    def filters(self):
        return filter_map((deploy_validate, deploy_input_errors,
                           deploy_gpu_owner, deploy_labels, deploy_selector, deploy_workload, deploy_gpu_deployment,
                           deploy_gpu_image_prepull, deploy_apply_diff, deploy_memory_plus),
                          (_deploy.DeployError, _catalog.CatalogError, ValueError))
