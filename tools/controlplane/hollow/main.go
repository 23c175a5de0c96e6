// Command hollow is an opt-in GPU node for the tests that need the REAL kubelet
// (tests/support/hollow_node.py, docs/testing.md "The real kubelet: a hollow GPU node"):
// kubemark's hollow kubelet (k8s.io/kubernetes/pkg/kubemark) whose ContainerManager has the
// kubelet's real device manager (gpucm.go), the fake CRI runtime (k8s.io/cri-client/pkg/fake)
// in its own process, so that a kubelet restart is a kubelet restart and not a node reboot,
// and a fake NVIDIA device plugin on the real deviceplugin/v1beta1 API (gpuplugin.go).
//
//	hollow runtime    --endpoint unix:///dir/cri.sock [--control-socket /dir/control.sock]
//	hollow kubelet    --kubeconfig K --name N --root-dir D --runtime-endpoint E --device-plugin-dir P
//	                  --kubelet-port N [--node-labels k=v,...] [--runtime-wait 60s]
//	hollow gpu-plugin --device-plugin-dir P [--devices 1] [--resource nvidia.com/gpu]
//
// Every path and port comes from the flags: several nodes (one per pytest worker) run side by side.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	fakeremote "k8s.io/cri-client/pkg/fake"
	"k8s.io/klog/v2"
	cadvisortest "k8s.io/kubernetes/pkg/kubelet/cadvisor/testing"
	"k8s.io/kubernetes/pkg/kubemark"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hollow runtime|kubelet|gpu-plugin [flags]")
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	var err error
	switch name {
	case "runtime":
		err = runRuntime(args)
	case "kubelet":
		err = runKubelet(args)
	case "gpu-plugin":
		err = runGPUPlugin(args)
	default:
		err = fmt.Errorf("unknown command %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// runRuntime serves the fake CRI (cri-client/pkg/fake) until killed: its containers live in this
// process, so killing it is what a node reboot does to them. --control-socket serves HTTP on a
// unix socket: GET /containers lists them (JSON), POST /exit?name=<container>[&code=N] marks the running
// containers of that name exited (a crash; exit code 137, reason Error, unless given).
func runRuntime(args []string) error {
	fs := flag.NewFlagSet("runtime", flag.ExitOnError)
	endpoint := fs.String("endpoint", "", "unix:///path/cri.sock")
	control := fs.String("control-socket", "", "unix socket path for the control API")
	_ = fs.Parse(args)
	rt := fakeremote.NewFakeRemoteRuntime()
	rt.ImageService.SetFakeImageSize(1 << 30) // size 0: kubelet says "Id or size of image ... is not set"
	_ = os.Remove(strings.TrimPrefix(*endpoint, "unix://"))
	if err := rt.Start(*endpoint); err != nil {
		return err
	}
	fmt.Println("fake CRI on", *endpoint)
	if *control != "" {
		frs := rt.RuntimeService
		mux := http.NewServeMux()
		mux.HandleFunc("/containers", func(w http.ResponseWriter, r *http.Request) {
			frs.Lock()
			defer frs.Unlock()
			list := []map[string]any{}
			for id, c := range frs.Containers {
				list = append(list, map[string]any{"id": id, "name": c.Metadata.Name, "attempt": c.Metadata.Attempt,
					"state": c.State.String(), "exitCode": c.ExitCode, "pod": c.Labels["io.kubernetes.pod.name"],
					"namespace": c.Labels["io.kubernetes.pod.namespace"]})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(list)
		})
		mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			code := int32(137)
			if v := r.URL.Query().Get("code"); v != "" {
				var n int
				if _, err := fmt.Sscan(v, &n); err != nil {
					http.Error(w, "bad code", http.StatusBadRequest)
					return
				}
				code = int32(n)
			}
			frs.Lock()
			defer frs.Unlock()
			n := 0
			for _, c := range frs.Containers {
				if c.Metadata.Name == r.URL.Query().Get("name") && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
					c.State = runtimeapi.ContainerState_CONTAINER_EXITED
					c.FinishedAt = time.Now().UnixNano()
					c.ExitCode = code
					c.Reason = "Error"
					n++
				}
			}
			fmt.Println("exited", n, "container(s) named", r.URL.Query().Get("name"), "code", code)
			fmt.Fprintf(w, "exited %d\n", n)
		})
		_ = os.Remove(*control)
		l, err := net.Listen("unix", *control)
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(l, mux) }()
	}
	select {}
}

// waitForRuntime waits until the runtime's unix socket accepts connections: the kubelet may be
// started before `hollow runtime` listens, and the CRI client fails at once on a refused
// connection ("validate service connection: ... connection refused").
func waitForRuntime(endpoint string, wait time.Duration) error {
	path := strings.TrimPrefix(endpoint, "unix://")
	deadline := time.Now().Add(wait)
	for logged := false; ; {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the runtime at %s did not accept connections within %s: %w", endpoint, wait, err)
		}
		if !logged {
			klog.InfoS("waiting for the runtime", "endpoint", endpoint, "err", err)
			logged = true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connectRuntime returns the CRI runtime and image services, retried while the runtime is not up yet.
func connectRuntime(ctx context.Context, endpoint string, wait time.Duration) (internalapi.RuntimeService, internalapi.ImageManagerService, error) {
	deadline := time.Now().Add(wait)
	for {
		if err := waitForRuntime(endpoint, time.Until(deadline)); err != nil {
			return nil, nil, err
		}
		rs, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(15 * time.Second).Build(ctx)
		var is internalapi.ImageManagerService
		if err == nil {
			is, err = remote.NewRemoteImageServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(15 * time.Second).Build(ctx)
		}
		if err == nil {
			return rs, is, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, errors.Join(fmt.Errorf("the runtime at %s did not answer within %s", endpoint, wait), err)
		}
		klog.InfoS("runtime not ready yet, retrying", "endpoint", endpoint, "err", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func runKubelet(args []string) error {
	fs := flag.NewFlagSet("kubelet", flag.ExitOnError)
	klog.InitFlags(fs)
	kubeconfig := fs.String("kubeconfig", "", "")
	nodeName := fs.String("name", "hollow-gpu", "")
	rootDir := fs.String("root-dir", "", "kubelet root dir (fixed, so a restart finds its state)")
	endpoint := fs.String("runtime-endpoint", "", "unix:///.../cri.sock of `hollow runtime`")
	dpDir := fs.String("device-plugin-dir", "/var/lib/kubelet/device-plugins", "")
	port := fs.Int("kubelet-port", 10250, "")
	roPort := fs.Int("kubelet-read-only-port", 0, "")
	labels := fs.String("node-labels", "", "k=v,k=v")
	runtimeWait := fs.Duration("runtime-wait", time.Minute, "how long to wait for the runtime's socket")
	_ = fs.Parse(args)
	if *rootDir == "" || *endpoint == "" {
		return errors.New("--root-dir and --runtime-endpoint are required")
	}
	ctx := context.Background()
	logger := klog.Background()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.UserAgent = "hollow-kubelet"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	nodeLabels := map[string]string{}
	for _, kv := range strings.Split(*labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			nodeLabels[k] = v
		}
	}
	f, c := kubemark.GetHollowKubeletConfig(&kubemark.HollowKubeletOptions{
		NodeName: *nodeName, KubeletPort: *port, KubeletReadOnlyPort: *roPort, MaxPods: 110, NodeLabels: nodeLabels,
	})
	for _, d := range []string{"static-pods", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(*rootDir, d), 0o755); err != nil {
			return err
		}
	}
	_ = os.RemoveAll(f.RootDirectory) // GetHollowKubeletConfig made a $TMPDIR/hollow-kubelet.N we do not use
	f.RootDirectory = *rootDir
	c.Address = "127.0.0.1" // kubemark binds 0.0.0.0
	c.StaticPodPath = filepath.Join(*rootDir, "static-pods")
	c.PodLogsDir = filepath.Join(*rootDir, "pod-logs")
	c.NodeStatusUpdateFrequency.Duration = 2 * time.Second
	c.SyncFrequency.Duration = 5 * time.Second

	hbCfg := *cfg
	hbCfg.Timeout = c.NodeStatusUpdateFrequency.Duration
	hbCfg.QPS = -1
	hb, err := kubernetes.NewForConfig(&hbCfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dpDir, 0o755); err != nil {
		return err
	}
	gcm, err := newGPUContainerManager(logger, filepath.Join(*dpDir, "kubelet.sock"))
	if err != nil {
		return err
	}
	rs, is, err := connectRuntime(ctx, *endpoint, *runtimeWait)
	if err != nil {
		return err
	}
	hk := kubemark.NewHollowKubelet(f, c, client, hb, &cadvisortest.Fake{NodeName: *nodeName}, is, rs, gcm)
	hk.Run(ctx)
	return nil
}
