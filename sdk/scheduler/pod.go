package scheduler

import (
	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// readPodFields decodes the pod part after the sequence number into p,
// reusing p's maps and slices (a Pod is valid for one attempt only). The
// JSON blobs alias the request; the caller copies them.
func readPodFields(r *hostapi.SchedReader, p *Pod, lean bool) (affinity, spread, raw []byte) {
	clearResources(&p.Requests)
	readResources(r, &p.Requests)
	p.NonZeroMilliCPU = r.I64()
	p.NonZeroMemory = r.I64()
	if lean {
		// Resources and priority only (ResourcesOnly).
		for range 5 {
			r.StrBytes()
		}
		p.Priority = int32(r.I64())
		skipPodDetails(r)
		if p.Labels == nil {
			p.Labels = noLabels
		}
		r.Blob()
		r.Blob()
		r.Blob()
		return nil, nil, nil
	}
	p.UID = r.Str()
	p.Namespace = r.Str()
	p.Name = r.Str()
	p.NodeName = r.Str()
	p.SchedulerName = r.Str()
	p.Priority = int32(r.I64())
	p.Labels = readStringMap(r, p.Labels, true)
	p.NodeSelector = readStringMap(r, p.NodeSelector, false)
	n := int(r.U16())
	p.Tolerations = p.Tolerations[:0]
	for range n {
		p.Tolerations = append(p.Tolerations, Toleration{Key: r.Str(), Operator: r.Str(), Value: r.Str(), Effect: r.Str()})
	}
	n = int(r.U16())
	p.Images = p.Images[:0]
	for range n {
		p.Images = append(p.Images, r.Str())
	}
	n = int(r.U16())
	p.HostPorts = p.HostPorts[:0]
	for range n {
		p.HostPorts = append(p.HostPorts, HostPort{Protocol: r.Str(), HostIP: r.Str(), Port: int32(r.U32())})
	}
	return r.Blob(), r.Blob(), r.Blob()
}

// readStringMap reads u16 n × (str, str) into m (cleared and reused). An
// empty map is returned as nil unless keepEmpty.
func readStringMap(r *hostapi.SchedReader, m map[string]string, keepEmpty bool) map[string]string {
	n := int(r.U16())
	if n == 0 && !keepEmpty {
		return nil
	}
	if m == nil {
		m = make(map[string]string, n)
	} else {
		clear(m)
	}
	for range n {
		k := r.Str()
		m[k] = r.Str()
	}
	return m
}

func clearResources(r *Resources) {
	scalar := r.Scalar
	clear(scalar)
	*r = Resources{Scalar: scalar}
	if len(scalar) == 0 {
		r.Scalar = nil
	}
}

// setBlobs copies the pod's JSON blobs into buf and points p at them.
func setBlobs(p *Pod, buf []byte, affinity, spread, raw []byte) []byte {
	buf = append(buf[:0], raw...)
	buf = append(buf, affinity...)
	buf = append(buf, spread...)
	p.Raw = rawjson.Value(buf[:len(raw):len(raw)])
	p.Affinity, p.TopologySpreadConstraints = nil, nil
	if len(affinity) > 0 {
		p.Affinity = rawjson.Value(buf[len(raw) : len(raw)+len(affinity) : len(raw)+len(affinity)])
	}
	if len(spread) > 0 {
		p.TopologySpreadConstraints = rawjson.Value(buf[len(raw)+len(affinity):])
	}
	return buf
}
