package runtime

import (
	"encoding/binary"
	"fmt"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// interruptCheck is the code inserted at function entries and loop
// headers of a body that rewriteCode wraps (see wrapBody): "global.get
// $stop; br_if $trap", where $trap is a block around the whole body after
// which comes "unreachable". The hot path is a load and a branch that is
// not taken. depth is the number of constructs open at the check inside
// the original body.
//
// It has no call, not even on a cold path: a call inside a loop makes
// wazero's register allocator spill the loop's values on every iteration
// (measured: 2.4x slower on a tight loop; see docs/RATIONALE.md).
func interruptCheck(stop, depth uint32) []byte {
	b := []byte{0x23}
	b = binary.AppendUvarint(b, uint64(stop))
	b = append(b, 0x0d)
	return binary.AppendUvarint(b, uint64(depth)+1)
}

// interruptCheckIf is the self-contained check for bodies that cannot be
// wrapped (several results): "global.get $stop; if; unreachable; end".
func interruptCheckIf(stop uint32) []byte {
	b := []byte{0x23}
	b = binary.AppendUvarint(b, uint64(stop))
	return append(b, 0x04, 0x40, 0x00, 0x0b)
}

// checkPoint is where a check goes: an offset into the code section and
// the nesting depth there.
type checkPoint struct {
	at    int
	depth uint32
}

// bodyInfo locates one function body of the code section and its check
// points (points[firstPt:afterPt]).
type bodyInfo struct {
	start, end       int // the body's bytes, after its size
	localsEnd        int // where its instructions start
	firstPt, afterPt int
	blockType        []byte // of its results, for wrapBody; nil: use interruptCheckIf
}

// rewriteCode inserts interrupt checks (of the global stop) at the entry
// of every function body and after the block type of every loop.
// blockTypes[k] is the block type of body k's results (nil when it has
// several: such bodies get interruptCheckIf instead of being wrapped).
func rewriteCode(content []byte, stop uint32, blockTypes [][]byte, stats *rewriteStats) ([]byte, error) {
	r := reader{b: content}
	n := r.u32()
	if r.err != nil {
		return nil, fmt.Errorf("code section: %w", r.err)
	}
	if int(n) != len(blockTypes) {
		return nil, fmt.Errorf("code section has %d bodies for %d functions: %w", n, len(blockTypes), errdefs.ErrInvalid)
	}
	bodies := make([]bodyInfo, 0, n)
	points := make([]checkPoint, 0, n*4)
	for k := uint32(0); k < n; k++ {
		size := r.u32()
		start := r.i
		if r.err != nil || uint64(start)+uint64(size) > uint64(len(content)) {
			return nil, fmt.Errorf("code section: body %d truncated: %w", k, errdefs.ErrInvalid)
		}
		end := start + int(size)
		first := len(points)
		var localsEnd int
		var err error
		points, localsEnd, err = scanBody(content[:end], start, points)
		if err != nil {
			return nil, fmt.Errorf("code section: body %d: %w", k, err)
		}
		bodies = append(bodies, bodyInfo{start: start, end: end, localsEnd: localsEnd,
			firstPt: first, afterPt: len(points), blockType: blockTypes[k]})
		r.i = end
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("code section: %w", err)
	}
	stats.functions += len(bodies)
	stats.checks += len(points)

	out := make([]byte, 0, len(content)+len(points)*6+len(bodies)*12)
	out = binary.AppendUvarint(out, uint64(n))
	var buf []byte
	for _, b := range bodies {
		buf = appendBody(buf[:0], content, b, points[b.firstPt:b.afterPt], stop)
		out = binary.AppendUvarint(out, uint64(len(buf)))
		out = append(out, buf...)
	}
	return out, nil
}

// appendBody appends body b of content with its checks. A body whose
// results fit a block type is wrapped:
//
//	locals
//	block $trap
//	  block $body (result ...)
//	    original instructions, with "global.get $stop; br_if $trap" checks
//	  end
//	  return
//	end
//	unreachable
//
// Branches keep their meaning: relative label depths inside the original
// instructions still reach the same constructs, and a branch to the
// function's label now reaches $body, whose end returns its values.
func appendBody(dst, content []byte, b bodyInfo, points []checkPoint, stop uint32) []byte {
	if len(points) == 0 {
		return append(dst, content[b.start:b.end]...)
	}
	if b.blockType == nil {
		at := b.start
		check := interruptCheckIf(stop)
		for _, p := range points {
			dst = append(dst, content[at:p.at]...)
			dst = append(dst, check...)
			at = p.at
		}
		return append(dst, content[at:b.end]...)
	}
	dst = append(dst, content[b.start:b.localsEnd]...)
	dst = append(dst, 0x02, 0x40, 0x02)
	dst = append(dst, b.blockType...)
	at := b.localsEnd
	for _, p := range points {
		dst = append(dst, content[at:p.at]...)
		dst = append(dst, interruptCheck(stop, p.depth)...)
		at = p.at
	}
	dst = append(dst, content[at:b.end-1]...) // without the body's end
	return append(dst, 0x0b, 0x0f, 0x0b, 0x00, 0x0b)
}

// scanBody walks the body code[start:] instruction by instruction and
// appends the offsets where a check goes: after every loop's block type,
// and after the locals unless the body reaches a loop before any call or
// branch (then that loop's check is the entry's; Go's functions all start
// so) or has neither loops nor calls nor branches (then it runs in bounded
// time). Every call and every loop iteration thus passes a check, so
// neither loops nor recursion escape one.
//
// scanBody is strict where the encoding decides instruction boundaries
// (LEB128 lengths), so it splits a body exactly where wazero will;
// anything it does not know is an error.
func scanBody(code []byte, start int, points []checkPoint) ([]checkPoint, int, error) {
	i, ok := skipLocals(code, start)
	if !ok {
		return points, 0, fmt.Errorf("locals at offset %d: %w", start, errdefs.ErrInvalid)
	}
	localsEnd, entryDecided := i, false
	depth := uint32(0)
	for i < len(code) {
		at := i
		op := code[i]
		i++
		if !entryDecided && (op == 0x03 || leavesStraightLine(op)) {
			entryDecided = true
			if op != 0x03 {
				points = append(points, checkPoint{localsEnd, 0}) // no loop point yet: the order holds
			}
		}
		switch immediates[op] {
		case immNone:
			if op == 0x0b {
				depth-- // the body's own end wraps around; nothing follows it
			}
		case immU32:
			i, ok = skipLEB(code, i, 5)
			if op == 0x18 { // delegate closes a (legacy) try
				depth--
			}
		case immU32x2:
			if i, ok = skipLEB(code, i, 5); ok {
				i, ok = skipLEB(code, i, 5)
			}
		case immI64:
			i, ok = skipLEB(code, i, 10)
		case immMemArg:
			i, ok = skipMemArg(code, i)
		case immBlock:
			i, ok = skipBlockType(code, i)
			depth++
			if ok && op == 0x03 {
				points = append(points, checkPoint{i, depth})
			}
		case immF32:
			i, ok = i+4, i+4 <= len(code)
		case immF64:
			i, ok = i+8, i+8 <= len(code)
		default:
			r := reader{b: code, i: i}
			if err := r.immediates(op); err != nil {
				return points, 0, fmt.Errorf("instruction %#x at offset %d: %w", op, at, err)
			}
			i = r.i
			if op == 0x1f { // try_table opens a construct
				depth++
			}
		}
		if !ok {
			return points, 0, fmt.Errorf("instruction %#x at offset %d: bad immediate: %w", op, at, errdefs.ErrInvalid)
		}
	}
	if code[len(code)-1] != 0x0b || depth != ^uint32(0) {
		return points, 0, fmt.Errorf("body does not end with the end of its constructs: %w", errdefs.ErrInvalid)
	}
	return points, localsEnd, nil
}

// leavesStraightLine reports whether op may call, branch or throw: if
// (0x04), else, try, throw, rethrow, throw_ref, br, br_if, br_table,
// return, the calls (0x10-0x15), delegate, try_table, br_on_null and
// br_on_non_null.
func leavesStraightLine(op byte) bool {
	return (op >= 0x04 && op <= 0x0a) || (op >= 0x0c && op <= 0x15) || op == 0x18 || op == 0x1f ||
		op == 0xd5 || op == 0xd6
}

// Kinds of immediates, for the opcodes scanBody decodes inline.
const (
	immOther  = iota // decoded by reader.immediates
	immNone          // no immediates
	immU32           // one LEB128 of at most 5 bytes (indexes, labels, i32.const, s33)
	immU32x2         // two of them
	immI64           // i64.const
	immMemArg        // alignment and offset
	immBlock         // block type
	immF32           // 4 bytes
	immF64           // 8 bytes
)

// immediates maps each single-byte opcode to the kind of its immediates.
var immediates = func() (t [256]uint8) {
	set := func(kind uint8, ops ...int) {
		for _, op := range ops {
			t[op] = kind
		}
	}
	set(immNone, 0x00, 0x01, 0x05, 0x0a, 0x0b, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd4)
	for op := 0x45; op <= 0xc4; op++ {
		set(immNone, op)
	}
	set(immU32, 0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0x18, 0x3f, 0x40, 0x41, 0xd0, 0xd2, 0xd5, 0xd6)
	for op := 0x20; op <= 0x26; op++ {
		set(immU32, op)
	}
	set(immU32x2, 0x11, 0x13)
	set(immI64, 0x42)
	for op := 0x28; op <= 0x3e; op++ {
		set(immMemArg, op)
	}
	set(immBlock, 0x02, 0x03, 0x04, 0x06)
	set(immF32, 0x43)
	set(immF64, 0x44)
	return t
}()

// skipLEB skips a LEB128 of at most maxBytes bytes at code[i:].
func skipLEB(code []byte, i, maxBytes int) (int, bool) {
	for end := min(i+maxBytes, len(code)); i < end; {
		c := code[i]
		i++
		if c < 0x80 {
			return i, true
		}
	}
	return i, false
}

// skipMemArg skips alignment (with the multi-memory bit) and offset.
func skipMemArg(code []byte, i int) (int, bool) {
	start := i
	i, ok := skipLEB(code, i, 5)
	if !ok {
		return i, false
	}
	if code[start]&0x40 != 0 {
		if i, ok = skipLEB(code, i, 5); !ok { // memory index
			return i, false
		}
	}
	return skipLEB(code, i, 5) // offset (32-bit memories only)
}

// skipBlockType skips a block type: empty (0x40), a value type or a type
// index (s33).
func skipBlockType(code []byte, i int) (int, bool) {
	if i < len(code) && (code[i] == 0x63 || code[i] == 0x64) {
		return skipLEB(code, i+1, 5) // reference type with a heap type
	}
	return skipLEB(code, i, 5)
}

// skipLocals skips the local declarations at the start of a body.
func skipLocals(code []byte, i int) (int, bool) {
	r := reader{b: code, i: i}
	groups := r.u32()
	for g := uint32(0); g < groups && r.err == nil; g++ {
		r.u32()
		r.valType()
	}
	return r.i, r.err == nil
}

// valType skips a value type, including the two-part reference types of
// the typed function references proposal.
func (r *reader) valType() {
	if t := r.byte(); t == 0x63 || t == 0x64 {
		r.skipLEB(5) // heap type
	}
}

// blockType skips a block type: empty (0x40), a value type or a type index.
func (r *reader) blockType() {
	if r.i < len(r.b) && (r.b[r.i] == 0x63 || r.b[r.i] == 0x64) {
		r.valType()
		return
	}
	r.skipLEB(5) // s33
}

// memArg skips alignment (with the multi-memory bit) and offset.
func (r *reader) memArg() {
	align := r.u32()
	if align&0x40 != 0 {
		r.u32() // memory index
	}
	r.skipLEB(5) // offset (32-bit memories only)
}

// immediates skips the immediates of op. It knows every opcode wazero
// compiles: WebAssembly 2.0 (including SIMD), threads, tail calls,
// exception handling and typed function references.
func (r *reader) immediates(op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try
		r.blockType()
	case op == 0x0e: // br_table
		n := r.u32()
		for k := uint64(0); k <= uint64(n) && r.err == nil; k++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for k := uint32(0); k < n && r.err == nil; k++ {
			r.valType()
		}
	case op == 0x1f: // try_table
		r.blockType()
		r.catchClauses()
	case op == 0x07 || op == 0x08 || op == 0x09 || (op >= 0x0c && op <= 0x0d) ||
		op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15 || op == 0x18 ||
		(op >= 0x20 && op <= 0x26) || op == 0xd2 || op == 0xd5 || op == 0xd6:
		r.u32() // one index: tag, label, function, type, local, global, table
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memArg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.skipLEB(5)
	case op == 0x42:
		r.skipLEB(10)
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op == 0xd0: // ref.null ht
		r.skipLEB(5)
	case op == 0xfc:
		return r.miscImmediates()
	case op == 0xfd:
		return r.vectorImmediates()
	case op == 0xfe:
		return r.atomicImmediates()
	case op <= 0x01 || op == 0x05 || op == 0x0a || op == 0x0b || op == 0x0f || op == 0x19 ||
		op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1 || op == 0xd4:
		// no immediates
	default:
		return fmt.Errorf("unknown opcode: %w", errdefs.ErrInvalid)
	}
	return r.err
}

// catchClauses skips the catch vector of try_table.
func (r *reader) catchClauses() {
	n := r.u32()
	for k := uint32(0); k < n && r.err == nil; k++ {
		switch kind := r.byte(); kind {
		case 0x00, 0x01: // catch, catch_ref: tag, label
			r.u32()
			r.u32()
		case 0x02, 0x03: // catch_all, catch_all_ref: label
			r.u32()
		default:
			r.fail("unknown catch kind")
		}
	}
}

// miscImmediates skips a 0xFC instruction (saturating truncation, bulk
// memory, tables).
func (r *reader) miscImmediates() error {
	sub := r.u32()
	switch {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init data mem
		r.u32()
		r.u32()
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		r.u32() // data.drop, memory.fill, elem.drop, table.grow/size/fill
	case sub == 10, sub == 12, sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	default:
		return fmt.Errorf("unknown 0xfc opcode %d: %w", sub, errdefs.ErrInvalid)
	}
	return r.err
}

// vectorImmediates skips a 0xFD (SIMD) instruction.
func (r *reader) vectorImmediates() error {
	sub := r.u32()
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, store, load_zero
		r.memArg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		r.skip(1)
	case sub >= 84 && sub <= 91: // load_lane, store_lane
		r.memArg()
		r.skip(1)
	case sub <= 0xff:
		// every other SIMD instruction has no immediates
	default:
		return fmt.Errorf("unknown 0xfd opcode %d: %w", sub, errdefs.ErrInvalid)
	}
	return r.err
}

// atomicImmediates skips a 0xFE (threads) instruction.
func (r *reader) atomicImmediates() error {
	sub := r.u32()
	switch {
	case sub == 0x03: // atomic.fence
		r.skip(1)
	case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
		r.memArg()
	default:
		return fmt.Errorf("unknown 0xfe opcode %d: %w", sub, errdefs.ErrInvalid)
	}
	return r.err
}
