package main

import (
	"context"
	"fmt"
	"net/netip"

	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/network"
)

// NetworkConfig is the network section of Config: the address ranges of
// pods and Services (like kubeadm's --pod-network-cidr and --service-cidr).
type NetworkConfig struct {
	ClusterCIDR      string `mapstructure:"cluster-cidr"`
	ServiceCIDR      string `mapstructure:"service-cidr"`
	NodePortRange    string `mapstructure:"service-node-port-range"`
	NodeCIDRMaskSize int64  `mapstructure:"node-cidr-mask-size"`

	// Parsed by complete.
	clusterCIDR netip.Prefix
	serviceCIDR netip.Prefix
	nodePorts   apiserver.PortRange
}

// networkComponent allocates node pod CIDRs; the API server allocates
// Service addresses from the same section.
func networkComponent() component {
	return component{
		name: "network",
		options: func() []option {
			return []option{
				{"cluster-cidr", network.DefaultClusterCIDR.String(), "IPv4 range node pod CIDRs are cut from"},
				{"service-cidr", apiserver.DefaultServiceCIDR.String(), "IPv4 range Service cluster IPs come from; must not overlap cluster-cidr"},
				{"service-node-port-range", apiserver.DefaultNodePorts.String(), "port range Service node ports come from"},
				{"node-cidr-mask-size", int64(network.DefaultNodeMaskSize), "prefix length of each node's pod CIDR"},
			}
		},
		complete: func(c *Config) []error {
			n := &c.Network
			var errs []error
			var err error
			if n.clusterCIDR, err = netip.ParsePrefix(n.ClusterCIDR); err != nil {
				errs = append(errs, invalid("cluster-cidr", n.ClusterCIDR, err.Error()))
			}
			if n.serviceCIDR, err = netip.ParsePrefix(n.ServiceCIDR); err != nil {
				errs = append(errs, invalid("service-cidr", n.ServiceCIDR, err.Error()))
			}
			if len(errs) == 0 {
				if err := network.ValidateCIDRs(n.clusterCIDR, n.serviceCIDR); err != nil {
					errs = append(errs, fmt.Errorf("invalid value for cluster-cidr/service-cidr: %w", err))
				}
			}
			if n.nodePorts, err = apiserver.ParsePortRange(n.NodePortRange); err != nil {
				errs = append(errs, invalid("service-node-port-range", n.NodePortRange, err.Error()))
			}
			if n.NodeCIDRMaskSize < 1 || n.NodeCIDRMaskSize > 30 || (n.clusterCIDR.IsValid() && int(n.NodeCIDRMaskSize) <= n.clusterCIDR.Bits()) {
				errs = append(errs, invalid("node-cidr-mask-size", n.NodeCIDRMaskSize, "must be longer than cluster-cidr's prefix and at most 30"))
			}
			return errs
		},
		start: func(ctx context.Context, env componentEnv) (func(), error) {
			cs, err := kubernetes.NewForConfig(env.Client(apiserver.User{Name: "system:kube-controller-manager"}))
			if err != nil {
				return nil, err
			}
			alloc, err := network.NewPodCIDRAllocator(network.PodCIDRConfig{
				Client:       cs,
				ClusterCIDR:  env.Config.Network.clusterCIDR,
				NodeMaskSize: int(env.Config.Network.NodeCIDRMaskSize),
				Logger:       env.Logger,
			})
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := alloc.Run(ctx); err != nil && ctx.Err() == nil {
					env.Logger.Error("pod CIDR allocator stopped", "err", err)
				}
			}()
			return func() { cancel(); <-done }, nil
		},
	}
}
