// Command lookup is a test plugin for sdk/plugintest; the plugin is in
// package lookupplugin so the test can also run it natively.
package main

import (
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest/testdata/lookup/lookupplugin"
)

func init() { sdk.RegisterAdmission(lookupplugin.Plugin{}, lookupplugin.Manifest()) }

func main() {}
