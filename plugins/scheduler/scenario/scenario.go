// Package scenario runs scheduler scenarios written as data: a YAML file
// in testdata/ gives the cluster (nodes, bound pods) and a sequence of
// steps (schedule a pod, change or remove a node, delete a pod); the
// harness runs them through the kernel's scheduling code
// (kernel/scheduler.Profile, every node evaluated, ties broken by node
// name) with the built-in plugins — natively linked, or as the real Wasm
// modules — and writes what happened (bindings, rejection reasons, the
// FailedScheduling message, each plugin's scores) next to it as a .golden
// file. `go test ./plugins/scheduler/scenario -update` regenerates the
// golden files; both runs (native and Wasm) must match them.
//
// File format (YAML):
//
//	# what the scenario shows
//	plugins:            # optional; default: the default profile (Builtins)
//	- {name: NodeAffinity, weight: 2, settings: {...}}
//	nodes:              # Node objects; status.allocatable defaults to
//	- metadata: ...     # cpu 4, memory 8Gi, pods 110, and the
//	                    # kubernetes.io/hostname label to the name
//	pods:               # bound pods (spec.nodeName set)
//	- ...
//	steps:
//	- schedule: {metadata: ..., spec: ...}   # bound where it lands
//	- node: {metadata: ...}                  # add or replace a node
//	- removeNode: n1
//	- deletePod: default/web-1
//	- preempt: {metadata: ..., spec: ...}    # schedule; if it fits nowhere,
//	                                         # preempt (victims deleted), retry
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// File is a scenario file.
type File struct {
	Plugins []PluginRef       `json:"plugins,omitempty"`
	Nodes   []json.RawMessage `json:"nodes"`
	Pods    []json.RawMessage `json:"pods,omitempty"`
	Steps   []Step            `json:"steps"`
}

// PluginRef places a built-in plugin in the scenario's profile.
type PluginRef struct {
	Name string `json:"name"`
	// Weight overrides the default weight (scorers).
	Weight int64 `json:"weight,omitempty"`
	// Settings are the plugin's settings.
	Settings json.RawMessage `json:"settings,omitempty"`
}

// Step is one action; exactly one field is set.
type Step struct {
	Schedule   json.RawMessage `json:"schedule,omitempty"`
	Node       json.RawMessage `json:"node,omitempty"`
	RemoveNode string          `json:"removeNode,omitempty"`
	DeletePod  string          `json:"deletePod,omitempty"`
	Preempt    json.RawMessage `json:"preempt,omitempty"`
}

// Parse reads a scenario file.
func Parse(data []byte) (*File, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Plugins makes the plugin configs of a profile: given the plugins a
// scenario names (with weights and settings), it returns the profile's
// PluginConfigs. Natively it links the plugin; for Wasm it loads the
// module.
type Plugins func(b Builtin, settings []byte, weight int64) (kscheduler.PluginConfig, error)

// profile returns the scenario's profile.
func (f *File) profile(mk Plugins) (*kscheduler.Profile, error) {
	refs := f.Plugins
	if len(refs) == 0 {
		for _, b := range Builtins() {
			refs = append(refs, PluginRef{Name: b.Name})
		}
	}
	var cfgs []kscheduler.PluginConfig
	for _, r := range refs {
		b, ok := builtin(r.Name)
		if !ok {
			return nil, fmt.Errorf("unknown plugin %q", r.Name)
		}
		w := r.Weight
		if w == 0 {
			w = b.Weight
		}
		cfg, err := mk(b, r.Settings, w)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", r.Name, err)
		}
		cfgs = append(cfgs, cfg)
	}
	return kscheduler.NewProfile(kscheduler.DefaultSchedulerName, cfgs)
}

func parseNode(raw json.RawMessage) (*corev1.Node, error) {
	var n corev1.Node
	if err := strictUnmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.Name == "" {
		return nil, errors.New("node without a name")
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if _, ok := n.Labels[corev1.LabelHostname]; !ok {
		n.Labels[corev1.LabelHostname] = n.Name
	}
	if n.Status.Allocatable == nil {
		n.Status.Allocatable = corev1.ResourceList{}
	}
	for name, q := range map[corev1.ResourceName]string{corev1.ResourceCPU: "4", corev1.ResourceMemory: "8Gi", corev1.ResourcePods: "110"} {
		if _, ok := n.Status.Allocatable[name]; !ok {
			n.Status.Allocatable[name] = resource.MustParse(q)
		}
	}
	n.Status.Capacity = n.Status.Allocatable
	return &n, nil
}

func parsePod(raw json.RawMessage) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := strictUnmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("pod: %w", err)
	}
	if p.Name == "" {
		return nil, errors.New("pod without a name")
	}
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Spec.SchedulerName == "" {
		p.Spec.SchedulerName = kscheduler.DefaultSchedulerName
	}
	if p.UID == "" {
		p.UID = types.UID("uid-" + p.Namespace + "-" + p.Name)
	}
	return &p, nil
}

func strictUnmarshal(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Run plays the scenario and returns its report (the golden text).
func (f *File) Run(ctx context.Context, mk Plugins) (string, error) {
	prof, err := f.profile(mk)
	if err != nil {
		return "", err
	}
	snap := kscheduler.NewSnapshot()
	for _, raw := range f.Nodes {
		n, err := parseNode(raw)
		if err != nil {
			return "", err
		}
		snap.SetNode(n)
	}
	for _, raw := range f.Pods {
		p, err := parsePod(raw)
		if err != nil {
			return "", err
		}
		if p.Spec.NodeName == "" {
			return "", fmt.Errorf("pod %s: bound pods need spec.nodeName", p.Name)
		}
		snap.SetPod(p)
	}
	var out strings.Builder
	for i, st := range f.Steps {
		switch {
		case st.Schedule != nil:
			p, err := parsePod(st.Schedule)
			if err != nil {
				return "", fmt.Errorf("step %d: %w", i, err)
			}
			res, err := prof.Schedule(ctx, snap, p, kscheduler.Options{AllNodes: true, Trace: true})
			if err != nil {
				return "", fmt.Errorf("step %d: schedule %s: %w", i, p.Name, err)
			}
			report(&out, p, &res)
			if res.Node != "" {
				p.Spec.NodeName = res.Node
				snap.SetPod(p)
			}
		case st.Preempt != nil:
			p, err := parsePod(st.Preempt)
			if err != nil {
				return "", fmt.Errorf("step %d: %w", i, err)
			}
			if err := preempt(ctx, &out, prof, snap, p); err != nil {
				return "", fmt.Errorf("step %d: preempt %s: %w", i, p.Name, err)
			}
		case st.Node != nil:
			n, err := parseNode(st.Node)
			if err != nil {
				return "", fmt.Errorf("step %d: %w", i, err)
			}
			snap.SetNode(n)
			fmt.Fprintf(&out, "node %s set\n", n.Name)
		case st.RemoveNode != "":
			snap.RemoveNode(st.RemoveNode)
			fmt.Fprintf(&out, "node %s removed\n", st.RemoveNode)
		case st.DeletePod != "":
			ns, name, ok := strings.Cut(st.DeletePod, "/")
			if !ok {
				return "", fmt.Errorf("step %d: deletePod wants namespace/name", i)
			}
			snap.RemovePod(ns, name)
			fmt.Fprintf(&out, "pod %s deleted\n", st.DeletePod)
		default:
			return "", fmt.Errorf("step %d is empty", i)
		}
	}
	return out.String(), nil
}

// preempt schedules p; if it fits nowhere, runs preemption, deletes the
// victims and schedules it again, reporting each stage.
func preempt(ctx context.Context, out *strings.Builder, prof *kscheduler.Profile, snap *kscheduler.Snapshot, p *corev1.Pod) error {
	opts := kscheduler.Options{AllNodes: true, Trace: true}
	res, err := prof.Schedule(ctx, snap, p, opts)
	if err != nil {
		return err
	}
	report(out, p, &res)
	if res.Node == "" {
		pre, err := prof.Preempt(ctx, snap, p, &res)
		if err != nil {
			return err
		}
		if pre.Node == "" {
			fmt.Fprintf(out, "  preemption: no candidate\n")
			return nil
		}
		var victims []string
		for _, v := range pre.Victims {
			victims = append(victims, fmt.Sprintf("%s/%s (priority %d)", v.Namespace, v.Name, v.Priority))
			snap.RemovePod(v.Namespace, v.Name)
		}
		fmt.Fprintf(out, "  preemption on %s (%d candidate nodes), victims: %s\n", pre.Node, pre.Candidates, strings.Join(victims, ", "))
		if res, err = prof.Schedule(ctx, snap, p, opts); err != nil {
			return err
		}
		report(out, p, &res)
	}
	if res.Node != "" {
		p.Spec.NodeName = res.Node
		snap.SetPod(p)
	}
	return nil
}

// report writes one scheduling result: the binding or the message, the
// rejected nodes with their reasons, then the total and per-plugin scores
// of the feasible nodes.
func report(out *strings.Builder, p *corev1.Pod, res *kscheduler.Result) {
	if res.Node != "" {
		fmt.Fprintf(out, "schedule %s/%s -> %s\n", p.Namespace, p.Name, res.Node)
	} else {
		fmt.Fprintf(out, "schedule %s/%s -> unschedulable: %s\n", p.Namespace, p.Name, res.Message)
	}
	for _, n := range slices.Sorted(maps.Keys(res.Reasons)) {
		fmt.Fprintf(out, "  rejected %s: %s\n", n, strings.Join(res.Reasons[n], "; "))
	}
	if len(res.Scores) == 0 {
		return
	}
	fmt.Fprintf(out, "  scores%s\n", scoreLine(res.Scores))
	for _, plugin := range slices.Sorted(maps.Keys(res.PluginScores)) {
		fmt.Fprintf(out, "    %s%s\n", plugin, scoreLine(res.PluginScores[plugin]))
	}
}

func scoreLine(m map[string]int64) string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%d", n, m[n])
	}
	return b.String()
}
