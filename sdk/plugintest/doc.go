// Package plugintest tests Tugboat plugins written with sdk: natively, in
// the test's process, and as Wasm under the real runtime, with one call
// each.
//
//   - New / NewRegistered return a Harness that runs a plugin's admit entry
//     point natively (the same bytes path as the Wasm export), with its
//     host calls served by a fake Cache.
//   - RunWasm builds a plugin's main package with GOOS=wasip1 GOARCH=wasm
//     -buildmode=c-shared (once per test binary), loads it with
//     github.com/tugboat-dev/tugboat/runtime and wraps it as the admission
//     hook the API server calls.
//
// Both implement Reviewer, so one table of Requests can run against both
// and compare Results. Helpers take testing.TB and fail the test on setup
// errors; Configure and LoadWasm return settings errors for tests of
// settings validation. See docs/PLUGIN_GUIDE.md.
package plugintest
