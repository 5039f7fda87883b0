package runtime

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// This file rewrites a module's binary at load time, before compiling it:
//
//   - it appends a mutable i32 global, the stop flag, exported as
//     interruptExport, and inserts interruptCheck at every function entry
//     and right after every loop header, so a guest traps within one loop
//     iteration of the flag being set (see "Why are deadlines enforced by
//     rewriting the module?" in docs/RATIONALE.md);
//   - it sets the maximum of the module's memory to the plugin's limit,
//     which makes the limit per module although wazero's own limit is per
//     runtime.
//
// Everything else is copied byte for byte. Only the sizes that change (the
// function bodies, the code, global, export and memory sections) are
// re-encoded.

// interruptExport is the name under which a rewritten module exports its
// interrupt global.
const interruptExport = "tugboat.interrupt"

// wasmMagic is the module preamble: "\0asm" and binary version 1.
var wasmMagic = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank orders the known non-custom sections as the binary format
// requires (the tag section sits between memory and global).
var sectionRank = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13,
}

// Import and export kinds.
const (
	externFunc   = 0x00
	externTable  = 0x01
	externMemory = 0x02
	externGlobal = 0x03
	externTag    = 0x04
)

// rewriteOptions say what to change.
type rewriteOptions struct {
	// memoryMaxPages, if not 0, becomes the maximum of the module's memory.
	memoryMaxPages uint32
	// interrupt enables the injection of the interrupt checks.
	interrupt bool
	// mergeData merges active data segments closer than maxDataGap bytes
	// into one (filling the gap with zeros), unless the module has a data
	// count section (then instructions may name segments by index).
	mergeData bool
	// exportGlobals exports every global the module defines under
	// globalExportPrefix and its index among them (snapshots read and set
	// them).
	exportGlobals bool
}

// globalExportPrefix names the globals exportGlobals exports.
const globalExportPrefix = "tugboat.global."

// maxDataGap is the largest run of zeros mergeData writes between two
// segments. Go's linker emits a segment per run of non-zero bytes (37,000
// in a small plugin), and instantiating evaluates each one's offset:
// merged, instantiation is four times faster.
const maxDataGap = 64

// rewriteStats describe what a rewrite did.
type rewriteStats struct {
	functions int // function bodies seen
	checks    int // checks inserted
}

// section is one section of the input.
type section struct {
	id      byte
	content []byte // without id and size
	raw     []byte // with id and size, as in the input
}

// moduleLayout is what the rewriter learns about a module before writing.
type moduleLayout struct {
	sections        []section
	importedGlobals uint32
	definedGlobals  uint32
	importedMemory  bool
	hasDataCount    bool
	// resultTypes[t] is the block type of type t's results, nil when they
	// need a type index (several results); funcTypes are the type indexes
	// of the defined functions.
	resultTypes [][]byte
	funcTypes   []uint32
	exportNames map[string]bool
}

// rewriteModule returns bin with the changes of opts applied. It returns an
// error wrapping errdefs.ErrInvalid when bin is not a well-formed module.
func rewriteModule(bin []byte, opts rewriteOptions) ([]byte, rewriteStats, error) {
	var stats rewriteStats
	layout, err := parseLayout(bin)
	if err != nil {
		return nil, stats, err
	}
	if opts.interrupt && layout.exportNames[interruptExport] {
		return nil, stats, fmt.Errorf("module already exports %q: %w", interruptExport, errdefs.ErrInvalid)
	}
	if opts.memoryMaxPages != 0 && layout.importedMemory {
		return nil, stats, fmt.Errorf("module imports its memory; a memory limit cannot be applied: %w", errdefs.ErrInvalid)
	}
	stop := layout.importedGlobals + layout.definedGlobals
	var exports []byte // entries added to the export section
	var nExports uint32
	if opts.interrupt {
		exports, nExports = interruptExportEntry(stop), 1
	}
	if opts.exportGlobals {
		for i := range layout.definedGlobals {
			name := globalExportPrefix + strconv.FormatUint(uint64(i), 10)
			if layout.exportNames[name] {
				return nil, stats, fmt.Errorf("module already exports %q: %w", name, errdefs.ErrInvalid)
			}
			exports = binary.AppendUvarint(exports, uint64(len(name)))
			exports = append(exports, name...)
			exports = append(exports, externGlobal)
			exports = binary.AppendUvarint(exports, uint64(layout.importedGlobals+i))
			nExports++
		}
	}

	out := make([]byte, 0, len(bin)+len(bin)/16+64)
	out = append(out, wasmMagic...)
	pending := map[byte][]byte{} // sections to insert when their place comes
	if opts.interrupt {
		pending[secGlobal] = append([]byte{1}, interruptGlobal...)
	}
	if nExports > 0 {
		pending[secExport] = append(binary.AppendUvarint(nil, uint64(nExports)), exports...)
	}
	flush := func(before int) {
		for _, id := range []byte{secGlobal, secExport} {
			if c, ok := pending[id]; ok && sectionRank[id] < before {
				out = appendSection(out, id, c)
				delete(pending, id)
			}
		}
	}
	for _, s := range layout.sections {
		if s.id != secCustom {
			flush(sectionRank[s.id])
		}
		content, changed := s.content, true
		switch {
		case s.id == secMemory && opts.memoryMaxPages != 0:
			content, err = rewriteMemory(content, opts.memoryMaxPages)
		case s.id == secGlobal && opts.interrupt:
			content, err = appendVectorEntries(content, 1, interruptGlobal)
			delete(pending, secGlobal)
		case s.id == secExport && nExports > 0:
			content, err = appendVectorEntries(content, nExports, exports)
			delete(pending, secExport)
		case s.id == secData && opts.mergeData && !layout.hasDataCount:
			content, err = mergeData(content)
		case s.id == secCode && opts.interrupt:
			var bts [][]byte
			if bts, err = layout.bodyBlockTypes(); err == nil {
				content, err = rewriteCode(content, stop, bts, &stats)
			}
		default:
			changed = false
		}
		if err != nil {
			return nil, stats, err
		}
		if changed {
			out = appendSection(out, s.id, content)
		} else {
			out = append(out, s.raw...) // untouched, including its size's encoding
		}
	}
	flush(1 << 30)
	return out, stats, nil
}

// parseLayout splits bin into sections and reads the counts the rewrite
// needs.
func parseLayout(bin []byte) (*moduleLayout, error) {
	if len(bin) < len(wasmMagic) || !bytes.Equal(bin[:len(wasmMagic)], wasmMagic) {
		return nil, fmt.Errorf("not a WebAssembly 1.0 binary (bad magic or version): %w", errdefs.ErrInvalid)
	}
	l := &moduleLayout{exportNames: map[string]bool{}}
	r := reader{b: bin, i: len(wasmMagic)}
	lastRank := 0
	for r.i < len(r.b) {
		hdr := r.i
		id := r.byte()
		size := r.u32()
		start := r.i
		if r.err != nil || uint64(start)+uint64(size) > uint64(len(bin)) {
			return nil, fmt.Errorf("section %d at offset %d: truncated: %w", id, start, errdefs.ErrInvalid)
		}
		content := bin[start : start+int(size)]
		r.i = start + int(size)
		if id != secCustom {
			rank, ok := sectionRank[id]
			if !ok || rank <= lastRank {
				return nil, fmt.Errorf("section %d at offset %d: unknown or out of order: %w", id, start, errdefs.ErrInvalid)
			}
			lastRank = rank
		}
		var err error
		switch id {
		case secImport:
			err = l.readImports(content)
		case secGlobal:
			l.definedGlobals, err = vectorCount(content)

		case secExport:
			err = l.readExports(content)
		case secDataCount:
			l.hasDataCount = true
		case secType:
			err = l.readTypes(content)
		case secFunction:
			err = l.readFunctions(content)
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		l.sections = append(l.sections, section{id: id, content: content, raw: bin[hdr:r.i]})
	}
	return l, nil
}

func (l *moduleLayout) readImports(content []byte) error {
	r := reader{b: content}
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case externFunc, externTag:
			if kind == externTag {
				r.byte()
			}
			r.u32()
		case externTable:
			r.byte() // reference type
			r.limits()
		case externMemory:
			r.limits()
			l.importedMemory = true
		case externGlobal:
			r.byte() // value type
			r.byte() // mutability
			l.importedGlobals++
		default:
			return fmt.Errorf("import %d: unknown kind %#x: %w", k, kind, errdefs.ErrInvalid)
		}
	}
	return r.done()
}

func (l *moduleLayout) readTypes(content []byte) error {
	r := reader{b: content}
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		if form := r.byte(); form != 0x60 {
			return fmt.Errorf("type %d: form %#x is not a function type: %w", k, form, errdefs.ErrInvalid)
		}
		params := r.u32()
		for p := uint32(0); p < params && r.err == nil; p++ {
			r.valType()
		}
		results := r.u32()
		start := r.i
		for p := uint32(0); p < results && r.err == nil; p++ {
			r.valType()
		}
		switch results {
		case 0:
			l.resultTypes = append(l.resultTypes, []byte{0x40})
		case 1:
			l.resultTypes = append(l.resultTypes, r.b[start:r.i])
		default:
			l.resultTypes = append(l.resultTypes, nil)
		}
	}
	return r.done()
}

func (l *moduleLayout) readFunctions(content []byte) error {
	r := reader{b: content}
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		l.funcTypes = append(l.funcTypes, r.u32())
	}
	return r.done()
}

// bodyBlockTypes returns the block type of each defined function's
// results (nil where wrapBody cannot be used).
func (l *moduleLayout) bodyBlockTypes() ([][]byte, error) {
	bts := make([][]byte, len(l.funcTypes))
	for k, t := range l.funcTypes {
		if int(t) >= len(l.resultTypes) {
			return nil, fmt.Errorf("function %d has unknown type %d: %w", k, t, errdefs.ErrInvalid)
		}
		bts[k] = l.resultTypes[t]
	}
	return bts, nil
}

func (l *moduleLayout) readExports(content []byte) error {
	r := reader{b: content}
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		l.exportNames[r.name()] = true
		r.byte()
		r.u32()
	}
	return r.done()
}

// vectorCount reads the element count at the start of a vector section.
func vectorCount(content []byte) (uint32, error) {
	r := reader{b: content}
	n := r.u32()
	return n, r.err
}

// appendVectorEntries appends n encoded entries to a vector section,
// re-encoding its count.
func appendVectorEntries(content []byte, n uint32, entries []byte) ([]byte, error) {
	r := reader{b: content}
	count := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := binary.AppendUvarint(make([]byte, 0, len(content)+len(entries)+5), uint64(count)+uint64(n))
	out = append(out, content[r.i:]...)
	return append(out, entries...), nil
}

// interruptGlobal is the stop flag: "(global (mut i32) (i32.const 0))".
var interruptGlobal = []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}

// interruptExportEntry exports global index under interruptExport.
func interruptExportEntry(index uint32) []byte {
	b := binary.AppendUvarint(nil, uint64(len(interruptExport)))
	b = append(b, interruptExport...)
	b = append(b, externGlobal)
	return binary.AppendUvarint(b, uint64(index))
}

// rewriteMemory sets the maximum of the (single) memory to maxPages. A
// module whose minimum is already above maxPages is refused.
func rewriteMemory(content []byte, maxPages uint32) ([]byte, error) {
	r := reader{b: content}
	n := r.u32()
	if r.err != nil || n != 1 {
		return nil, fmt.Errorf("memory section with %d memories: %w", n, errdefs.ErrInvalid)
	}
	flags := r.byte()
	minPages := r.u32()
	oldMax := uint32(0)
	if flags&0x01 != 0 {
		oldMax = r.u32()
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if flags&^0x01 != 0 {
		return nil, fmt.Errorf("memory flags %#x (shared or 64-bit) are not supported: %w", flags, errdefs.ErrInvalid)
	}
	if minPages > maxPages {
		return nil, fmt.Errorf("module needs %d KiB of memory at start, above the limit of %d KiB: %w",
			minPages*64, maxPages*64, errdefs.ErrTooLarge)
	}
	if oldMax != 0 && oldMax < maxPages {
		maxPages = oldMax
	}
	out := []byte{1, 0x01}
	out = binary.AppendUvarint(out, uint64(minPages))
	return binary.AppendUvarint(out, uint64(maxPages)), nil
}

// dataSegment is one segment of the data section.
type dataSegment struct {
	raw    []byte // the encoded segment
	active bool   // active, memory 0, offset "i32.const n"
	offset uint32
	data   []byte
}

// mergeData rewrites the data section with neighbouring active segments
// merged (see maxDataGap). Passive and other segments stay as they are.
func mergeData(content []byte) ([]byte, error) {
	r := reader{b: content}
	n := r.u32()
	segs := make([]dataSegment, 0, n)
	for k := uint32(0); k < n && r.err == nil; k++ {
		start := r.i
		var s dataSegment
		switch flags := r.u32(); flags {
		case 0, 2:
			if flags == 2 {
				r.u32() // memory index
			}
			if r.i < len(r.b) && r.b[r.i] == 0x41 && flags == 0 {
				r.i++
				off := r.i
				r.skipLEB(5)
				v, ok := decodeSLEB32(r.b[off:r.i])
				s.active, s.offset = ok && r.byte() == 0x0b, uint32(v)
				if !s.active {
					return content, nil // an unusual encoding: leave the section alone
				}
			} else {
				return content, nil
			}
		case 1:
		default:
			return nil, fmt.Errorf("data segment %d: flags %d: %w", k, flags, errdefs.ErrInvalid)
		}
		size := r.u32()
		r.skip(int(size))
		if r.err == nil {
			s.data = r.b[r.i-int(size) : r.i]
		}
		s.raw = r.b[start:r.i]
		segs = append(segs, s)
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("data section: %w", err)
	}
	return encodeMergedData(segs), nil
}

// encodeMergedData writes segs, merging each run of active segments whose
// gaps are at most maxDataGap bytes.
func encodeMergedData(segs []dataSegment) []byte {
	size := 0
	for _, s := range segs {
		size += len(s.raw)
	}
	body := make([]byte, 0, size+size/4+16)
	count := 0
	for i := 0; i < len(segs); {
		s := segs[i]
		if !s.active {
			body = append(body, s.raw...)
			count, i = count+1, i+1
			continue
		}
		end := uint64(s.offset) + uint64(len(s.data))
		j := i + 1
		for j < len(segs) && segs[j].active && uint64(segs[j].offset) >= end &&
			uint64(segs[j].offset)-end <= maxDataGap {
			end = uint64(segs[j].offset) + uint64(len(segs[j].data))
			j++
		}
		body = append(body, 0x00, 0x41)
		body = appendSLEB(body, int64(int32(s.offset)))
		body = append(body, 0x0b)
		body = binary.AppendUvarint(body, end-uint64(s.offset))
		base := len(body) - int(s.offset) // body index of memory address 0
		for _, m := range segs[i:j] {
			for len(body) < base+int(m.offset) {
				body = append(body, 0) // the gap: at most maxDataGap bytes
			}
			body = append(body, m.data...)
		}
		count, i = count+1, j
	}
	return append(binary.AppendUvarint(nil, uint64(count)), body...)
}

// decodeSLEB32 decodes a signed LEB128 of at most 5 bytes.
func decodeSLEB32(b []byte) (int32, bool) {
	var v int64
	var shift uint
	for i, c := range b {
		v |= int64(c&0x7f) << shift
		shift += 7
		if c < 0x80 {
			if c&0x40 != 0 && shift < 64 {
				v |= -1 << shift
			}
			return int32(v), i < 5 && v >= -1<<31 && v < 1<<31
		}
	}
	return 0, false
}

// appendSLEB appends v as a signed LEB128.
func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendSection appends a section with its id and size.
func appendSection(out []byte, id byte, content []byte) []byte {
	out = append(out, id)
	out = binary.AppendUvarint(out, uint64(len(content)))
	return append(out, content...)
}

// reader decodes the primitive encodings of the binary format. The first
// error sticks; later reads return zero values.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at offset %d: %w", what, r.i, errdefs.ErrInvalid)
	}
	r.i = len(r.b)
}

func (r *reader) byte() byte {
	if r.err != nil || r.i >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if v > 0xffffffff {
				r.fail("integer too large")
				return 0
			}
			return uint32(v)
		}
	}
	r.fail("integer representation too long")
	return 0
}

// skipLEB skips a LEB128 number of at most maxBytes bytes.
func (r *reader) skipLEB(maxBytes int) {
	for k := 0; k < maxBytes; k++ {
		if r.i >= len(r.b) {
			r.fail("unexpected end")
			return
		}
		c := r.b[r.i]
		r.i++
		if c < 0x80 {
			return
		}
	}
	r.fail("integer representation too long")
}

func (r *reader) skip(n int) {
	if r.err != nil || n > len(r.b)-r.i {
		r.fail("unexpected end")
		return
	}
	r.i += n
}

func (r *reader) name() string {
	n := r.u32()
	if r.err != nil || int(n) > len(r.b)-r.i {
		r.fail("name out of bounds")
		return ""
	}
	s := string(r.b[r.i : r.i+int(n)])
	r.i += int(n)
	return s
}

func (r *reader) limits() {
	flags := r.byte()
	r.skipLEB(10)
	if flags&0x01 != 0 {
		r.skipLEB(10)
	}
}

// done reports the sticky error, or an error when bytes are left over.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if r.i != len(r.b) {
		return fmt.Errorf("%d unexpected bytes at offset %d: %w", len(r.b)-r.i, r.i, errdefs.ErrInvalid)
	}
	return nil
}
