package scheduler

import (
	"errors"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

var errBadPod = errors.New("sdk: scheduler request pod is not a JSON object")

// decodePod fills the fields of p that come from p.Raw, in one pass over
// the top-level members.
func decodePod(p *Pod) error {
	err := p.Raw.EachMember(func(key []byte, v rawjson.Value) bool {
		switch string(key) {
		case "metadata":
			_ = v.EachMember(func(key []byte, v rawjson.Value) bool {
				switch string(key) {
				case "name":
					p.Name, _ = v.String()
				case "namespace":
					p.Namespace, _ = v.String()
				case "uid":
					p.UID, _ = v.String()
				case "labels":
					p.Labels = stringMap(v)
				}
				return true
			})
		case "spec":
			decodePodSpec(p, v)
		}
		return true
	})
	if err != nil {
		return errBadPod
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	return nil
}

func decodePodSpec(p *Pod, spec rawjson.Value) {
	_ = spec.EachMember(func(key []byte, v rawjson.Value) bool {
		switch string(key) {
		case "nodeName":
			p.NodeName, _ = v.String()
		case "schedulerName":
			p.SchedulerName, _ = v.String()
		case "nodeSelector":
			if !v.IsNull() {
				p.NodeSelector = stringMap(v)
			}
		case "affinity":
			if !v.IsNull() {
				p.Affinity = v
			}
		case "topologySpreadConstraints":
			if !v.IsNull() {
				p.TopologySpreadConstraints = v
			}
		case "tolerations":
			_ = v.EachElem(func(_ int, t rawjson.Value) bool {
				p.Tolerations = append(p.Tolerations, Toleration{
					Key: member(t, "key"), Operator: member(t, "operator"),
					Value: member(t, "value"), Effect: member(t, "effect"),
				})
				return true
			})
		case "priority":
			n, _ := v.Int()
			p.Priority = int32(n)
		case "containers", "initContainers":
			_ = v.EachElem(func(_ int, c rawjson.Value) bool {
				decodeContainer(p, c)
				return true
			})
		}
		return true
	})
}

func decodeContainer(p *Pod, c rawjson.Value) {
	if img := member(c, "image"); img != "" {
		p.Images = append(p.Images, img)
	}
	ports, ok := c.Get("ports")
	if !ok {
		return
	}
	_ = ports.EachElem(func(_ int, port rawjson.Value) bool {
		hp, ok := port.Get("hostPort")
		if !ok {
			return true
		}
		n, _ := hp.Int()
		if n <= 0 {
			return true
		}
		proto := member(port, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		p.HostPorts = append(p.HostPorts, HostPort{Protocol: proto, HostIP: member(port, "hostIP"), Port: int32(n)})
		return true
	})
}
