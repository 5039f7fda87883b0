// Command cronjob is the CronJob controller plugin (the policy lives in
// package cronjob). It embeds the time zone database (time/tzdata, about
// 450 KB) so that spec.timeZone works in the guest, which has no files.
package main

import (
	_ "time/tzdata"

	"github.com/tugboat-dev/tugboat/plugins/controllers/cronjob/cronjob"
	"github.com/tugboat-dev/tugboat/sdk"
)

func init() {
	sdk.RegisterController(cronjob.New(), cronjob.Manifest(), cronjob.Spec())
}

func main() {}
