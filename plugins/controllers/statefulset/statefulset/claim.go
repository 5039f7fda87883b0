package statefulset

import (
	"errors"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// claimPods returns the pods the DaemonSet controls after adopting
// matching orphans and releasing owned pods that no longer match.
func claimPods(ns string, meta *kube.Meta, sel kube.Selector, owner kube.OwnerRef) ([]kube.Pod, error) {
	owned, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: ns, FieldSelector: hostapi.FieldOwnerUID + "=" + meta.UID})
	if err != nil {
		return nil, err
	}
	matching, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: ns, LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(owned)+len(matching))
	var out []kube.Pod
	for _, raw := range slices.Concat(owned, matching) {
		p := kube.ReadPod(raw)
		if seen[p.Meta.Name] {
			continue
		}
		seen[p.Meta.Name] = true
		ref, hasCtl := p.Meta.ControllerRef()
		switch {
		case hasCtl && ref.UID == meta.UID:
			if sel.Matches(p.Meta.Labels) {
				out = append(out, p)
				continue
			}
			if p.Meta.Deleting {
				continue
			}
			if _, err := sdk.MergePatch("pods", ns, p.Meta.Name, "", kube.OwnerRefsPatch(p.Meta.UID, kube.WithoutOwner(p.Meta.Owners, meta.UID))); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return nil, err
			}
		case !hasCtl && sel.Matches(p.Meta.Labels) && !p.Meta.Deleting && !meta.Deleting:
			refs := append(slices.Clone(p.Meta.Owners), owner)
			if _, err := sdk.MergePatch("pods", ns, p.Meta.Name, "", kube.OwnerRefsPatch(p.Meta.UID, refs)); err != nil {
				if errors.Is(err, sdk.ErrNotFound) {
					continue
				}
				return nil, err
			}
			p.Meta.Owners = refs
			out = append(out, p)
		}
	}
	return out, nil
}

func deletePod(ns string, p *kube.Pod) error {
	opts := []byte(`{"preconditions":{"uid":`)
	opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
	err := sdk.DeleteObject("pods", ns, p.Meta.Name, opts)
	if errors.Is(err, sdk.ErrNotFound) || errors.Is(err, sdk.ErrConflict) {
		return nil
	}
	return err
}

// templateHash hashes the pod template (FNV-32a of its JSON, rendered in
// apimachinery's safe alphabet like pod-template-hash).
func templateHash(tmpl rawjson.Value) string {
	const safe = "bcdfghjklmnpqrstvwxz2456789"
	h := fnv.New32a()
	h.Write(tmpl)
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(digits))
	for i := range len(digits) {
		out[i] = safe[int(digits[i])%len(safe)]
	}
	return string(out)
}
