// netpol-matrix: the connectivity matrix of a set of NetworkPolicies, computed by
// cyclonus's policy engine (github.com/mattfenwick/cyclonus/pkg/matcher), the same code
// `cyclonus analyze --mode query-traffic` runs. Reads one JSON document on stdin:
//
//	{"policies": [NetworkPolicy, ...],
//	 "namespaces": {"ai-lab": {"kubernetes.io/metadata.name": "ai-lab"}, ...},
//	 "peers": [{"name": "litellm", "namespace": "ai-lab", "labels": {...},
//	            "ports": [{"port": 4000, "name": "http", "protocol": "TCP"}]},
//	           {"name": "internet", "ip": "1.1.1.1", "ports": [{"port": 443, "protocol": "TCP"}]}]}
//
// and prints, as JSON, every (source, destination, port) that the policies allow, for every
// ordered pair of distinct peers and every port of the destination. A peer with "ip" and no
// namespace is outside the cluster.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type port struct {
	Port     int         `json:"port"`
	Name     string      `json:"name"`
	Protocol v1.Protocol `json:"protocol"`
}

type peer struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
	IP        string            `json:"ip"`
	Ports     []port            `json:"ports"`
}

type input struct {
	Policies   []*networkingv1.NetworkPolicy `json:"policies"`
	Namespaces map[string]map[string]string  `json:"namespaces"`
	Peers      []peer                        `json:"peers"`
}

type edge struct {
	From     string      `json:"from"`
	To       string      `json:"to"`
	Port     int         `json:"port"`
	Protocol v1.Protocol `json:"protocol"`
}

func trafficPeer(p peer, namespaces map[string]map[string]string) (*matcher.TrafficPeer, error) {
	if p.Namespace == "" {
		if p.IP == "" {
			return nil, fmt.Errorf("peer %q has neither a namespace nor an ip", p.Name)
		}
		return &matcher.TrafficPeer{IP: p.IP}, nil
	}
	nsLabels, ok := namespaces[p.Namespace]
	if !ok {
		return nil, fmt.Errorf("peer %q is in namespace %q, which is not in \"namespaces\"", p.Name, p.Namespace)
	}
	ip := p.IP
	if ip == "" {
		ip = "10.42.0.1" // an in-cluster pod address (k3s cluster CIDR); ipBlock rules see it
	}
	return &matcher.TrafficPeer{IP: ip, Internal: &matcher.InternalPeer{
		PodLabels: p.Labels, NamespaceLabels: nsLabels, Namespace: p.Namespace}}, nil
}

func main() {
	var in input
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "netpol-matrix: cannot read the input document: %v\n", err)
		os.Exit(2)
	}
	for _, pol := range in.Policies {
		if pol.Namespace == "" {
			fmt.Fprintf(os.Stderr, "netpol-matrix: NetworkPolicy %q has no metadata.namespace\n", pol.Name)
			os.Exit(2)
		}
	}
	policy := matcher.BuildNetworkPolicies(true, in.Policies)
	peers := make([]*matcher.TrafficPeer, len(in.Peers))
	for i, p := range in.Peers {
		tp, err := trafficPeer(p, in.Namespaces)
		if err != nil {
			fmt.Fprintf(os.Stderr, "netpol-matrix: %v\n", err)
			os.Exit(2)
		}
		peers[i] = tp
	}
	edges := []edge{}
	for i, src := range in.Peers {
		for j, dst := range in.Peers {
			if i == j || (peers[i].Internal == nil && peers[j].Internal == nil) {
				continue
			}
			for _, pt := range dst.Ports {
				proto := pt.Protocol
				if proto == "" {
					proto = v1.ProtocolTCP
				}
				t := &matcher.Traffic{Source: peers[i], Destination: peers[j],
					ResolvedPort: pt.Port, ResolvedPortName: pt.Name, Protocol: proto}
				if policy.IsTrafficAllowed(t).IsAllowed() {
					edges = append(edges, edge{From: src.Name, To: dst.Name, Port: pt.Port, Protocol: proto})
				}
			}
		}
	}
	sort.SliceStable(edges, func(a, b int) bool {
		if edges[a].From != edges[b].From {
			return edges[a].From < edges[b].From
		}
		if edges[a].To != edges[b].To {
			return edges[a].To < edges[b].To
		}
		return edges[a].Port < edges[b].Port
	})
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(map[string]any{"analyser": "cyclonus v0.5.6 pkg/matcher", "allowed": edges}); err != nil {
		fmt.Fprintf(os.Stderr, "netpol-matrix: %v\n", err)
		os.Exit(1)
	}
}
