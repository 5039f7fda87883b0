// Command podtopologyspread is the PodTopologySpread scheduler plugin
// (filter and scorer): a pod's topologySpreadConstraints (maxSkew,
// minDomains, DoNotSchedule/ScheduleAnyway, node inclusion policies), as
// in kube-scheduler. No settings.
//
// Build it with `make plugins` (bin/plugins/podtopologyspread.wasm). The
// policy lives in package podtopologyspread so it can also be linked
// natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/podtopologyspread/podtopologyspread"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(podtopologyspread.New(), podtopologyspread.Manifest()) }

func main() {}
