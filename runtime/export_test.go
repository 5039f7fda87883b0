package runtime

import "path/filepath"

// SharedTestCacheDir is the compilation cache every test of this package shares
// (created by TestMain), exported to the external runtime_test package so
// that each module is compiled once per test run, not once per test.
func SharedTestCacheDir() string { return filepath.Join(testDir, "cache") }
