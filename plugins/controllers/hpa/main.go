// Command hpa is the HorizontalPodAutoscaler controller plugin (the
// policy lives in package hpa).
package main

import (
	"github.com/tugboat-dev/tugboat/plugins/controllers/hpa/hpa"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(hpa.New(), hpa.Manifest(), hpa.Spec())
}

func main() {}
