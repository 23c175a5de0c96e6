//go:build tools

// Package crdgen pins the upstream Go types whose CRD schemas the test control plane installs
// (tools/controlplane/build.sh runs controller-gen on them):
//   - helm.cattle.io HelmChart/HelmChartConfig: k3s's helm-controller, present on every k3s server;
//   - monitoring.coreos.com ServiceMonitor/PodMonitor/PrometheusRule/...: prometheus-operator,
//     installed on k3s by the kube-prometheus-stack chart.
package crdgen

import (
	_ "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
