// Command interpodaffinity is the InterPodAffinity scheduler plugin (filter
// and scorer): required and preferred pod affinity and anti-affinity,
// including existing pods' anti-affinity against the incoming pod, as in
// kube-scheduler. Settings (optional, InterPodAffinityArgs):
//
//	{"hardPodAffinityWeight": 1, "ignorePreferredTermsOfExistingPods": false}
//
// Build it with `make plugins` (bin/plugins/interpodaffinity.wasm). The
// policy lives in package interpodaffinity so it can also be linked
// natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/interpodaffinity/interpodaffinity"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(interpodaffinity.New(), interpodaffinity.Manifest()) }

func main() {}
