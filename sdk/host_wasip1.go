//go:build wasip1

package sdk

import (
	"unsafe"
)

// The tugboat_v1 host functions (hostapi.Func*). Go links an import only if
// the plugin reaches the function that calls it.

//go:wasmimport tugboat_v1 log
func hostLog(level int32, ptr unsafe.Pointer, size uint32)

//go:wasmimport tugboat_v1 get
func hostGet(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport tugboat_v1 list
func hostList(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport tugboat_v1 write
func hostWrite(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport tugboat_v1 read_result
func hostReadResult(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport tugboat_v1 now
func hostNow() int64

func defaultHost() Host { return wasmHost{} }

// wasmHost calls the runtime through the imports.
type wasmHost struct{}

// reqBuf is reused for encoding requests (calls never overlap in a guest).
var reqBuf []byte

func (wasmHost) Log(level Level, msg string) {
	hostLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func (wasmHost) Get(req GetRequest) ([]byte, error) {
	reqBuf = appendGetRequest(reqBuf[:0], req)
	return call(hostGet, reqBuf)
}

func (wasmHost) List(req ListRequest) ([][]byte, error) {
	reqBuf = appendListRequest(reqBuf[:0], req)
	b, err := call(hostList, reqBuf)
	if err != nil {
		return nil, err
	}
	return decodeListResponse(b)
}

func (wasmHost) Write(req WriteRequest) ([]byte, error) {
	b := appendWriteRequest(nil, req)
	return call(hostWrite, b)
}

func (wasmHost) Now() (int64, error) {
	ns := hostNow()
	if ns < 0 && ns >= -64 {
		return 0, CodeError(int32(ns))
	}
	return ns, nil
}

// call runs one host function with req and fetches its response with
// read_result (hostapi's guest -> host protocol).
func call(fn func(unsafe.Pointer, uint32) int32, req []byte) ([]byte, error) {
	n := fn(unsafe.Pointer(unsafe.SliceData(req)), uint32(len(req)))
	if n < 0 {
		return nil, CodeError(n)
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]byte, n)
	got := hostReadResult(unsafe.Pointer(&out[0]), uint32(n))
	if got < 0 {
		return nil, CodeError(got)
	}
	return out[:got], nil
}
