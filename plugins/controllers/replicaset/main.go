// Command replicaset is the ReplicaSet and ReplicationController controller
// plugin (the policy lives in package replicaset).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/replicaset/replicaset"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(replicaset.New(), replicaset.Manifest(), replicaset.Spec())
}

func main() {}
