// Command guest is the test plugin of package runtime: the ABI exports,
// require-labels admission logic, and one export per fault the tests
// provoke. It uses raw //go:wasmexport and //go:wasmimport, not the SDK.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o guest.wasm .
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport tugboat_v1 log
func hostLog(level, ptr, size uint32)

//go:wasmimport tugboat_v1 get
func hostGet(ptr, size uint32) int32

//go:wasmimport tugboat_v1 list
func hostList(ptr, size uint32) int32

//go:wasmimport tugboat_v1 read_result
func hostReadResult(ptr, size uint32) int32

//go:wasmimport tugboat_v1 now
func hostNow() int64

var (
	input  []byte // the buffer of the last tugboat_alloc
	result []byte // the last result, alive until the next call
	keep   [][]byte
	labels []string
	patch  []byte
)

func ptrOf(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

func out(b []byte) uint64 {
	result = b
	return uint64(ptrOf(b))<<32 | uint64(len(b))
}

func in(ptr, size uint32) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size) }

//go:wasmexport tugboat_abi_version
func abiVersion() int32 { return 1 }

//go:wasmexport tugboat_manifest
func manifest() uint64 {
	return out([]byte(`{"name":"testguest","kinds":["admission/validating","admission/mutating"],` +
		`"rules":[{"verbs":["get","list"],"resources":["pods"]}]}`))
}

//go:wasmexport tugboat_alloc
func alloc(size uint32) uint32 {
	input = make([]byte, size)
	return ptrOf(input)
}

type settings struct {
	RequiredLabels []string `json:"requiredLabels"`
	Reject         string   `json:"reject"`
	Patch          string   `json:"patch"` // a JSON patch every allowed response carries
}

//go:wasmexport tugboat_configure
func configure(ptr, size uint32) uint64 {
	var s settings
	if size > 0 {
		if err := json.Unmarshal(in(ptr, size), &s); err != nil {
			return out([]byte("settings: " + err.Error()))
		}
	}
	if s.Reject != "" {
		return out([]byte(s.Reject))
	}
	labels, patch = s.RequiredLabels, []byte(s.Patch)
	return out(nil)
}

type review struct {
	UID    string `json:"uid"`
	Object struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	} `json:"object"`
}

//go:wasmexport tugboat_admit
func admit(ptr, size uint32) uint64 {
	var r review
	if err := json.Unmarshal(in(ptr, size), &r); err != nil {
		return out([]byte(`{"allowed":false,"status":{"code":500,"message":"decode request"}}`))
	}
	var missing []string
	for _, l := range labels {
		if _, ok := r.Object.Metadata.Labels[l]; !ok {
			missing = append(missing, l)
		}
	}
	if len(missing) > 0 {
		msg := "missing required labels: " + strings.Join(missing, ", ")
		b, _ := json.Marshal(map[string]any{"uid": r.UID, "allowed": false, "status": map[string]any{"code": 403, "message": msg}})
		return out(b)
	}
	if len(patch) > 0 {
		b, _ := json.Marshal(map[string]any{"uid": r.UID, "allowed": true, "patchType": "JSONPatch", "patch": patch})
		return out(b)
	}
	return out([]byte(`{"uid":"` + r.UID + `","allowed":true}`))
}

//go:wasmexport echo
func echo(ptr, size uint32) uint64 { return out(append([]byte(nil), in(ptr, size)...)) }

var spins int

//go:wasmexport loop
func loop(ptr, size uint32) uint64 {
	for {
		spins++
	}
}

// slow spins forever when its input is "slow" and echoes otherwise.
//
//go:wasmexport slow
func slow(ptr, size uint32) uint64 {
	if string(in(ptr, size)) == "slow" {
		for {
			spins++
		}
	}
	return echo(ptr, size)
}

//go:wasmexport membomb
func membomb(ptr, size uint32) uint64 {
	for {
		keep = append(keep, make([]byte, 1<<20))
	}
}

//go:wasmexport panic
func panicky(ptr, size uint32) uint64 { panic("boom: " + string(in(ptr, size))) }

//go:wasmexport exit
func exit(ptr, size uint32) uint64 {
	os.Exit(3)
	return 0
}

// big returns a result of the size in its input.
//
//go:wasmexport big
func big(ptr, size uint32) uint64 {
	n, _ := strconv.Atoi(string(in(ptr, size)))
	return out(make([]byte, n))
}

// badresult returns a result pointing outside memory.
//
//go:wasmexport badresult
func badresult(ptr, size uint32) uint64 { return uint64(0xfffffff0)<<32 | 64 }

// get calls the host's get with the input as request and returns
// "code=<n>" or the object.
//
//go:wasmexport get
func get(ptr, size uint32) uint64 { return out(hostCall(hostGet, in(ptr, size))) }

//go:wasmexport list
func list(ptr, size uint32) uint64 { return out(hostCall(hostList, in(ptr, size))) }

func hostCall(fn func(ptr, size uint32) int32, req []byte) []byte {
	n := fn(ptrOf(req), uint32(len(req)))
	if n < 0 {
		return []byte(fmt.Sprintf("code=%d", n))
	}
	buf := make([]byte, n)
	if n == 0 {
		return buf
	}
	if got := hostReadResult(ptrOf(buf), uint32(n)); got != n {
		return []byte(fmt.Sprintf("read_result=%d", got))
	}
	return buf
}

//go:wasmexport now
func now(ptr, size uint32) uint64 { return out([]byte(strconv.FormatInt(hostNow(), 10))) }

// walltime returns the guest's own clock (WASI), in Unix nanoseconds.
//
//go:wasmexport walltime
func walltime(ptr, size uint32) uint64 {
	return out([]byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
}

//go:wasmexport log
func logs(ptr, size uint32) uint64 {
	msg := in(ptr, size)
	hostLog(1, ptrOf(msg), uint32(len(msg)))
	fmt.Println("stdout:", string(msg))
	return out(nil)
}

var array []int64

// sum adds up an array of n int64 (n from the input) rounds times; it is
// the loop-heavy function of the deadline benchmark.
//
//go:wasmexport sum
func sum(ptr, size uint32) uint64 {
	args := strings.Fields(string(in(ptr, size)))
	n, _ := strconv.Atoi(args[0])
	rounds, _ := strconv.Atoi(args[1])
	if len(array) != n {
		array = make([]int64, n)
		for i := range array {
			array[i] = int64(i)
		}
	}
	var s int64
	for r := 0; r < rounds; r++ {
		for _, v := range array {
			s += v
		}
	}
	return out([]byte(strconv.FormatInt(s, 10)))
}

func main() {}
