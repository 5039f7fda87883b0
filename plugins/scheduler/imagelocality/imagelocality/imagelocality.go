// Package imagelocality is the ImageLocality scheduler plugin's policy, as
// in kube-scheduler: a node scores higher the more of the pod's container
// and init container images (normalised to name:tag, ":latest" when no tag)
// it already has in status.images, each image counting its size scaled by
// the fraction of nodes that have it (to avoid piling pods onto the few
// nodes with an image). The sum is clamped to [23 MB, 1000 MB × containers]
// and mapped linearly to 0..100.
//
// An index of image name -> nodes (with sizes), updated as nodes change,
// makes a pod cost one lookup per image plus one per node holding it.
package imagelocality

import (
	"strings"

	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Name is the plugin's name, as in kube-scheduler.
const Name = "ImageLocality"

// Manifest returns the plugin's manifest (a scorer).
func Manifest() sdk.Manifest { return sdk.Manifest{Name: Name} }

// Thresholds of kube-scheduler's ImageLocality.
const (
	mb                    int64 = 1024 * 1024
	minThreshold                = 23 * mb
	maxContainerThreshold       = 1000 * mb
)

// Plugin is one ImageLocality instance. Not safe for concurrent use.
type Plugin struct {
	images map[string]map[int32]int64 // image name -> node index -> size
	pos    []int32                    // node index -> candidate position + 1 (scratch)
}

var (
	_ sched.Scorer       = (*Plugin)(nil)
	_ sched.ScoreSkipper = (*Plugin)(nil)
	_ sched.NodeWatcher  = (*Plugin)(nil)
	_ sched.Resetter     = (*Plugin)(nil)
)

// New returns a plugin with an empty index.
func New() *Plugin { return &Plugin{images: map[string]map[int32]int64{}} }

// Reset implements sched.Resetter.
func (p *Plugin) Reset() { p.images = map[string]map[int32]int64{} }

// NodeChanged implements sched.NodeWatcher.
func (p *Plugin) NodeChanged(old, cur *sched.Node) {
	if old != nil {
		for _, img := range old.Images {
			for _, name := range img.Names {
				if m := p.images[name]; m != nil {
					delete(m, old.Index)
					if len(m) == 0 {
						delete(p.images, name)
					}
				}
			}
		}
	}
	if cur != nil {
		for _, img := range cur.Images {
			for _, name := range img.Names {
				m := p.images[name]
				if m == nil {
					m = map[int32]int64{}
					p.images[name] = m
				}
				m[cur.Index] = img.SizeBytes
			}
		}
	}
}

// NormalizedImageName returns name with ":latest" appended when it has no
// tag (kube-scheduler's normalizedImageName).
func NormalizedImageName(name string) string {
	if strings.LastIndex(name, ":") <= strings.LastIndex(name, "/") {
		name += ":latest"
	}
	return name
}

// Relevance implements sched.Relevancer: only nodes that report images
// can score.
func (p *Plugin) Relevance() (filter, score sched.When) { return sched.Always, sched.WhenNodeImages }

// SkipScore implements sched.ScoreSkipper: no node reports any of the
// pod's images (or no node reports images at all), so every node scores 0.
func (p *Plugin) SkipScore(_ *sched.Snapshot, pod *sched.Pod) bool {
	if len(p.images) == 0 {
		return true
	}
	for _, img := range pod.Images {
		if len(p.images[NormalizedImageName(img)]) > 0 {
			return false
		}
	}
	return true
}

// Score implements sched.Scorer.
func (p *Plugin) Score(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	if len(p.images) == 0 || len(pod.Images) == 0 {
		return nil
	}
	total := float64(s.Len())
	found := false
	for _, img := range pod.Images {
		m := p.images[NormalizedImageName(img)]
		if len(m) == 0 {
			continue
		}
		if !found {
			found = true
			p.index(s, nodes)
		}
		spread := float64(len(m)) / total
		for idx, size := range m {
			if int(idx) < len(p.pos) && p.pos[idx] > 0 {
				scores[p.pos[idx]-1] += int64(float64(size) * spread)
			}
		}
	}
	if !found {
		return nil
	}
	maxThreshold := maxContainerThreshold * int64(len(pod.Images))
	for j, sum := range scores {
		sum = max(minThreshold, min(sum, maxThreshold))
		scores[j] = sched.MaxScore * (sum - minThreshold) / (maxThreshold - minThreshold)
	}
	return nil
}

// index maps node indexes to candidate positions.
func (p *Plugin) index(s *sched.Snapshot, nodes []*sched.Node) {
	if n := s.MaxIndex(); len(p.pos) < n {
		p.pos = make([]int32, n)
	} else {
		clear(p.pos)
	}
	for j, n := range nodes {
		if int(n.Index) < len(p.pos) {
			p.pos[n.Index] = int32(j + 1)
		}
	}
}
