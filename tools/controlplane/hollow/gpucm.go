package main

// gpuContainerManager is kubemark's stub ContainerManager (cm.NewStubContainerManager) with the
// kubelet's REAL device manager (pkg/kubelet/cm/devicemanager) and a topology manager
// (policy none) wired in exactly as container_manager_linux.go wires them, so device plugins
// register on <dir>/kubelet.sock, node capacity comes from ListAndWatch, and admission calls
// devicemanager.Allocate (UnexpectedAdmissionError and all).

import (
	"context"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/server/healthz"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	pluginwatcherapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/resourceupdates"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/config"
	kubecontainer "k8s.io/kubernetes/pkg/kubelet/container"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager/cache"
	"k8s.io/kubernetes/pkg/kubelet/status"
	schedulerframework "k8s.io/kubernetes/pkg/scheduler/framework"
)

// NewManagerImpl hard-codes /var/lib/kubelet/device-plugins/kubelet.sock; the unexported
// constructor takes the socket path (its directory also holds kubelet_internal_checkpoint).
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node, topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

type gpuContainerManager struct {
	cm.ContainerManager // the kubemark stub: no cgroups, cpu/memory managers fake
	tm                  topologymanager.Manager
	dm                  *devicemanager.ManagerImpl
}

func newGPUContainerManager(logger klog.Logger, socketPath string) (*gpuContainerManager, error) {
	tm, err := topologymanager.NewManager(logger, nil, topologymanager.PolicyNone, topologymanager.ContainerTopologyScope, nil)
	if err != nil {
		return nil, err
	}
	dm, err := newManagerImpl(logger, socketPath, nil, tm)
	if err != nil {
		return nil, err
	}
	tm.AddHintProvider(logger, dm)
	return &gpuContainerManager{ContainerManager: cm.NewStubContainerManager(), tm: tm, dm: dm}, nil
}

func (g *gpuContainerManager) Start(ctx context.Context, node *v1.Node, activePods cm.ActivePodsFunc, getNode cm.GetNodeFunc,
	sourcesReady config.SourcesReady, podStatusProvider status.PodStatusProvider, runtimeService internalapi.RuntimeService, lsci bool) error {
	if err := g.ContainerManager.Start(ctx, node, activePods, getNode, sourcesReady, podStatusProvider, runtimeService, lsci); err != nil {
		return err
	}
	// as cm.buildContainerMapAndRunningSetFromRuntime (unexported)
	sandboxes := map[string]string{}
	sbs, _ := runtimeService.ListPodSandbox(ctx, nil)
	for _, p := range sbs {
		sandboxes[p.Id] = p.Metadata.Uid
	}
	running := sets.New[string]()
	containers := containermap.NewContainerMap()
	cs, _ := runtimeService.ListContainers(ctx, nil)
	for _, c := range cs {
		uid, ok := sandboxes[c.PodSandboxId]
		if !ok {
			continue
		}
		containers.Add(uid, c.Metadata.Name, c.Id)
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running.Insert(c.Id)
		}
	}
	klog.FromContext(ctx).Info("gpu cm: starting device manager", "containers", len(cs), "running", running.Len())
	return g.dm.Start(klog.FromContext(ctx), devicemanager.ActivePodsFunc(activePods), sourcesReady, containers, running)
}

func (g *gpuContainerManager) GetPluginRegistrationHandlers() map[string]cache.PluginHandler {
	return map[string]cache.PluginHandler{pluginwatcherapi.DevicePlugin: g.dm.GetWatcherHandler()}
}

func (g *gpuContainerManager) GetHealthCheckers() []healthz.HealthChecker {
	return []healthz.HealthChecker{g.dm.GetHealthChecker()}
}

func (g *gpuContainerManager) GetDevicePluginResourceCapacity(logger klog.Logger) (v1.ResourceList, v1.ResourceList, []string) {
	return g.dm.GetCapacity(logger)
}

func (g *gpuContainerManager) GetResources(ctx context.Context, pod *v1.Pod, container *v1.Container) (*kubecontainer.RunContainerOptions, error) {
	opts := &kubecontainer.RunContainerOptions{}
	devOpts, err := g.dm.GetDeviceRunContainerOptions(ctx, pod, container)
	if err != nil || devOpts == nil {
		return opts, err
	}
	opts.Devices = append(opts.Devices, devOpts.Devices...)
	opts.Mounts = append(opts.Mounts, devOpts.Mounts...)
	opts.Envs = append(opts.Envs, devOpts.Envs...)
	opts.Annotations = append(opts.Annotations, devOpts.Annotations...)
	opts.CDIDevices = append(opts.CDIDevices, devOpts.CDIDevices...)
	return opts, nil
}

func (g *gpuContainerManager) UpdatePluginResources(node *schedulerframework.NodeInfo, attrs *lifecycle.PodAdmitAttributes) error {
	return g.dm.UpdatePluginResources(node, attrs)
}

func (g *gpuContainerManager) GetAllocateResourcesPodAdmitHandler(_ klog.Logger) lifecycle.PodAdmitHandler {
	return g.tm
}

func (g *gpuContainerManager) ShouldResetExtendedResourceCapacity() bool {
	return g.dm.ShouldResetExtendedResourceCapacity()
}

func (g *gpuContainerManager) UpdateAllocatedDevices(logger klog.Logger) {
	g.dm.UpdateAllocatedDevices(logger)
}

func (g *gpuContainerManager) UpdateAllocatedResourcesStatus(logger klog.Logger, pod *v1.Pod, st *v1.PodStatus) {
	g.dm.UpdateAllocatedResourcesStatus(logger, pod, st)
}

func (g *gpuContainerManager) Updates() <-chan resourceupdates.Update {
	return g.dm.Updates()
}

func (g *gpuContainerManager) GetDevices(podUID, containerName string) []*podresourcesapi.ContainerDevices {
	return toContainerDevices(g.dm.GetDevices(podUID, containerName))
}

func (g *gpuContainerManager) GetAllocatableDevices(logger klog.Logger) []*podresourcesapi.ContainerDevices {
	return toContainerDevices(g.dm.GetAllocatableDevices(logger))
}

// as cm.containerDevicesFromResourceDeviceInstances (unexported)
func toContainerDevices(devs devicemanager.ResourceDeviceInstances) []*podresourcesapi.ContainerDevices {
	var out []*podresourcesapi.ContainerDevices
	for resource, ids := range devs {
		for id := range ids {
			out = append(out, &podresourcesapi.ContainerDevices{ResourceName: resource, DeviceIds: []string{id}})
		}
	}
	return out
}
