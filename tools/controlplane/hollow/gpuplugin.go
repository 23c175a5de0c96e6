package main

// A fake NVIDIA device plugin on the real v1beta1 API: serves <dir>/fake-gpu.sock, registers
// with <dir>/kubelet.sock, advertises N healthy devices, Allocate answers with the env the NVIDIA
// plugin sets. Re-registers when the kubelet recreates kubelet.sock (kubelet restart), as the
// real plugin does.

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type fakeGPU struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
}

func (p *fakeGPU) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *fakeGPU) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (p *fakeGPU) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		fmt.Println("Allocate", c.DevicesIds)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func runGPUPlugin(args []string) error {
	fs := flag.NewFlagSet("gpu-plugin", flag.ExitOnError)
	dir := fs.String("device-plugin-dir", "/var/lib/kubelet/device-plugins", "")
	n := fs.Int("devices", 1, "")
	resource := fs.String("resource", "nvidia.com/gpu", "")
	_ = fs.Parse(args)
	p := &fakeGPU{}
	for i := 0; i < *n; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("GPU-fake-%04d", i), Health: pluginapi.Healthy})
	}
	sock := filepath.Join(*dir, "fake-gpu.sock")
	kubelet := filepath.Join(*dir, pluginapi.KubeletSocket[len(pluginapi.DevicePluginPath):])
	for {
		_ = os.Remove(sock)
		l, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		srv := grpc.NewServer()
		pluginapi.RegisterDevicePluginServer(srv, p)
		go func() { _ = srv.Serve(l) }()
		if err := register(kubelet, *resource); err != nil {
			fmt.Println("register:", err)
			srv.Stop()
			time.Sleep(time.Second)
			continue
		}
		fmt.Println("registered", *resource, "devices", *n)
		st, _ := os.Stat(kubelet)
		for { // a restarting kubelet wipes the dir (our socket too) and recreates kubelet.sock
			time.Sleep(200 * time.Millisecond)
			st2, err := os.Stat(kubelet)
			if _, err2 := os.Stat(sock); err != nil || err2 != nil || !st2.ModTime().Equal(st.ModTime()) {
				break
			}
		}
		fmt.Println("kubelet.sock changed: re-registering")
		srv.Stop()
	}
}

func register(kubeletSock, resource string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: "fake-gpu.sock", ResourceName: resource,
	})
	return err
}
