// Command imagelocality is the ImageLocality scheduler plugin (scorer):
// it prefers nodes that already have the pod's images, as in
// kube-scheduler. No settings.
//
// Build it with `make plugins` (bin/plugins/imagelocality.wasm). The
// policy lives in package imagelocality so it can also be linked natively.
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/imagelocality/imagelocality"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func init() { sched.Register(imagelocality.New(), imagelocality.Manifest()) }

func main() {}
