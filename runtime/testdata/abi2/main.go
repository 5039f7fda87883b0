// Command abi2 is a test plugin that claims ABI version 2.
package main

import "unsafe"

var buf []byte

//go:wasmexport tugboat_abi_version
func abiVersion() int32 { return 2 }

//go:wasmexport tugboat_manifest
func manifest() uint64 {
	buf = []byte(`{"name":"abi2","kinds":["admission/validating"]}`)
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))<<32 | uint64(len(buf))
}

//go:wasmexport tugboat_alloc
func alloc(size uint32) uint32 {
	buf = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

func main() {}
