// Command badimport is a test plugin that imports host functions the host
// does not offer.
package main

import "unsafe"

//go:wasmimport tugboat_v1 frobnicate
func frobnicate() int32

//go:wasmimport env launch_missiles
func launchMissiles() int32

var buf []byte

//go:wasmexport tugboat_abi_version
func abiVersion() int32 { return 1 + frobnicate() + launchMissiles() }

//go:wasmexport tugboat_manifest
func manifest() uint64 {
	buf = []byte(`{"name":"badimport","kinds":["admission/validating"]}`)
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))<<32 | uint64(len(buf))
}

//go:wasmexport tugboat_alloc
func alloc(size uint32) uint32 {
	buf = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

func main() {}
