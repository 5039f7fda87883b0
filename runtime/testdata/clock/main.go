// Command clock is a test plugin granted the clock: it reads the time
// through the host function and through WASI.
package main

import (
	"strconv"
	"time"
	"unsafe"
)

//go:wasmimport tugboat_v1 now
func hostNow() int64

var buf []byte

func out(b []byte) uint64 {
	buf = b
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))<<32 | uint64(len(buf))
}

//go:wasmexport tugboat_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport tugboat_manifest
func manifest() uint64 {
	return out([]byte(`{"name":"clock","kinds":["controller"],"grants":["clock"]}`))
}

//go:wasmexport tugboat_alloc
func alloc(size uint32) uint32 {
	buf = make([]byte, size)
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

//go:wasmexport now
func now(ptr, size uint32) uint64 { return out([]byte(strconv.FormatInt(hostNow(), 10))) }

//go:wasmexport walltime
func walltime(ptr, size uint32) uint64 {
	return out([]byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
}

// sleep sleeps for the milliseconds in its input.
//
//go:wasmexport sleep
func sleep(ptr, size uint32) uint64 {
	ms, _ := strconv.Atoi(string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size)))
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return out(nil)
}

func main() {}
