//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// Buffers shared with the host. The host writes each call's input into
// inBuf (handed out by tugboat_alloc) and reads each result from out; both
// stay referenced, hence alive, until the next call.
var (
	inBuf []byte
	out   []byte
)

// maxKeptBuffer: buffers larger than this are dropped after the call, so
// one huge request does not pin guest memory forever.
const maxKeptBuffer = 1 << 20

// inputReuse is what the guest promises for hostapi.ExportInputReuse:
// tugboat_alloc keeps its buffer across calls until a larger one is asked
// for, and finish drops it after a call only beyond maxKeptBuffer.
const inputReuse = 64 << 10

//go:wasmexport tugboat_input_reuse
func exportInputReuse() int32 { return inputReuse }

//go:wasmexport tugboat_abi_version
func exportABIVersion() int32 { return hostapi.ABIVersion }

//go:wasmexport tugboat_manifest
func exportManifest() uint64 {
	switch {
	case registered == nil && entry != nil:
		out = append(reuse(out), entry.ManifestJSON()...)
	case registered == nil:
		out = appendManifest(reuse(out), Manifest{})
	default:
		out = append(reuse(out), registered.manifestJSON...)
	}
	return result(out)
}

//go:wasmexport tugboat_alloc
func exportAlloc(size uint32) uint32 {
	if size == 0 {
		return 0
	}
	if uint32(cap(inBuf)) < size {
		inBuf = make([]byte, size)
	}
	inBuf = inBuf[:size]
	return uint32(uintptr(unsafe.Pointer(&inBuf[0])))
}

//go:wasmexport tugboat_configure
func exportConfigure(ptr, size uint32) uint64 {
	in := input(ptr, size)
	var err error
	if registered == nil && entry != nil {
		err = entry.Configure(in)
	} else {
		var mod *Module
		if mod, err = Registered(); err == nil {
			err = mod.Configure(in)
		}
	}
	out = reuse(out)
	if err != nil {
		out = append(out, err.Error()...)
	}
	return finish(out)
}

// admitStrings are the previous request's strings (calls never overlap in
// a guest).
var admitStrings lastStrings

//go:wasmexport tugboat_admit_layout
func exportAdmitLayout() int32 { return hostapi.AdmitLayoutBinary }

//go:wasmexport tugboat_admit
func exportAdmit(ptr, size uint32) uint64 {
	in := input(ptr, size)
	if registered == nil {
		out = failed("", errNoPlugin).appendJSON(reuse(out), "")
	} else {
		out = registered.admitWith(reuse(out), in, &admitStrings)
	}
	return finish(out)
}

// input returns the call's input, which the host wrote into the buffer from
// tugboat_alloc. Anything else is a host bug: trap.
func input(ptr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	base := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf))))
	if cap(inBuf) == 0 || ptr < base || uint64(ptr-base)+uint64(size) > uint64(cap(inBuf)) {
		panic("sdk: call input is not in the buffer from tugboat_alloc")
	}
	off := ptr - base
	return inBuf[off : off+size : off+size]
}

// finish releases an oversized input buffer and returns the packed result.
func finish(res []byte) uint64 {
	if cap(inBuf) > maxKeptBuffer {
		inBuf = nil
	}
	return result(res)
}

// result packs res as ptr<<32 | len; res stays alive through out.
func result(res []byte) uint64 {
	if len(res) == 0 {
		return 0
	}
	return hostapi.Pack(uint32(uintptr(unsafe.Pointer(&res[0]))), uint32(len(res)))
}

// reuse returns buf emptied for the next result, or nil if it grew past
// maxKeptBuffer (the host has read it by now).
func reuse(buf []byte) []byte {
	if cap(buf) > maxKeptBuffer {
		return nil
	}
	return buf[:0]
}
