package kube

import (
	"errors"
	"hash/fnv"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// ClaimPods returns the pods in ns that the object described by meta
// controls, as Kubernetes' ControllerRefManager does: owned pods that still
// match sel, plus matching orphans it adopts (adding owner as their
// controller reference); owned pods that no longer match are released
// (their reference removed). Nothing is adopted while the owner is being
// deleted.
func ClaimPods(ns string, meta *Meta, sel Selector, owner OwnerRef) ([]Pod, error) {
	owned, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: ns, FieldSelector: hostapi.FieldOwnerUID + "=" + meta.UID})
	if err != nil {
		return nil, err
	}
	var matching []rawjson.Value
	if sel.Valid() {
		if matching, err = sdk.List(sdk.ListRequest{Resource: "pods", Namespace: ns, LabelSelector: sel.String()}); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]bool, len(owned)+len(matching))
	var out []Pod
	for _, raw := range slices.Concat(owned, matching) {
		p := ReadPod(raw)
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
			if _, err := sdk.MergePatch("pods", ns, p.Meta.Name, "", OwnerRefsPatch(p.Meta.UID, WithoutOwner(p.Meta.Owners, meta.UID))); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return nil, err
			}
		case !hasCtl && sel.Matches(p.Meta.Labels) && !p.Meta.Deleting && !meta.Deleting:
			refs := append(slices.Clone(p.Meta.Owners), owner)
			if _, err := sdk.MergePatch("pods", ns, p.Meta.Name, "", OwnerRefsPatch(p.Meta.UID, refs)); err != nil {
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

// DeletePod deletes p (by uid precondition); a pod already gone or
// replaced is not an error.
func DeletePod(ns string, p *Pod) error {
	opts := []byte(`{"preconditions":{"uid":`)
	opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
	err := sdk.DeleteObject("pods", ns, p.Meta.Name, opts)
	if errors.Is(err, sdk.ErrNotFound) || errors.Is(err, sdk.ErrConflict) {
		return nil
	}
	return err
}

// safeAlphabet is apimachinery's rand.SafeEncodeString alphabet (no vowels,
// no 0/1/3 that read like letters, so no bad words).
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// TemplateHash is the hash of a pod template: like Kubernetes' ComputeHash,
// the FNV-32a hash of the template (here its JSON as the API server encodes
// it) and, when not nil, the collision count, rendered by encoding the
// decimal digits of the hash with SafeEncodeString. Deployments use it as
// pod-template-hash, DaemonSets and StatefulSets as their revision.
func TemplateHash(template []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(template)
	if collisionCount != nil {
		var b [4]byte
		c := uint32(*collisionCount)
		b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		h.Write(b[:])
	}
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(digits))
	for i := range len(digits) {
		out[i] = safeAlphabet[int(digits[i])%len(safeAlphabet)]
	}
	return string(out)
}
