package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// wasmModule assembles a module from sections built with sec.
func wasmModule(sections ...[]byte) []byte {
	return append(append([]byte(nil), wasmMagic...), bytes.Join(sections, nil)...)
}

// sec encodes a section whose content is the concatenation of parts.
func sec(id byte, parts ...[]byte) []byte {
	return appendSection(nil, id, bytes.Join(parts, nil))
}

// vec encodes a vector of already encoded entries.
func vec(entries ...[]byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(entries))), bytes.Join(entries, nil)...)
}

// body encodes a function body without locals.
func body(code ...byte) []byte {
	b := append([]byte{0}, code...)
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
}

// funcModule is a module with one function, () -> (), whose body is code.
func funcModule(code ...byte) []byte {
	return wasmModule(
		sec(secType, vec([]byte{0x60, 0, 0})),
		sec(secFunction, vec([]byte{0})),
		sec(secCode, vec(body(code...))),
	)
}

// countModule is a module with no globals and no exports but "count":
// (func (param i32) (result i32) (local i32) loop: i += 1 until i == n).
func countModule() []byte {
	countBody := []byte{
		0x01, 0x01, 0x7f, // one local i32
		0x03, 0x40, // loop
		0x20, 0x01, 0x41, 0x01, 0x6a, 0x22, 0x01, // local.get 1; i32.const 1; i32.add; local.tee 1
		0x20, 0x00, 0x47, 0x0d, 0x00, // local.get 0; i32.ne; br_if 0
		0x0b,       // end loop
		0x20, 0x01, // local.get 1
		0x0b,
	}
	return wasmModule(
		sec(secType, vec([]byte{0x60, 1, 0x7f, 1, 0x7f})),
		sec(secFunction, vec([]byte{0})),
		sec(secMemory, vec([]byte{0x00, 0x01})),
		sec(secExport, vec(append([]byte{5}, "count\x00\x00"...))),
		sec(secCode, vec(append(binary.AppendUvarint(nil, uint64(len(countBody))), countBody...))),
	)
}

// instantiate compiles and instantiates bin in a fresh runtime.
func instantiate(t testing.TB, bin []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	t.Cleanup(func() { _ = rt.Close(ctx) })
	mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	return mod
}

func TestRewriteInsertsSections(t *testing.T) {
	bin := countModule()
	out, stats, err := rewriteModule(bin, rewriteOptions{interrupt: true, memoryMaxPages: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stats.functions != 1 || stats.checks != 1 {
		t.Errorf("stats = %+v, want 1 function and 1 check (the loop's, which is also the entry's)", stats)
	}
	mod := instantiate(t, out)
	res, err := mod.ExportedFunction("count").Call(context.Background(), 1000)
	if err != nil || res[0] != 1000 {
		t.Fatalf("count(1000) = %v, %v", res, err)
	}
	stop, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	if !ok {
		t.Fatalf("no mutable global %q", interruptExport)
	}
	if max, ok := mod.Memory().Definition().Max(); !ok || max != 3 {
		t.Errorf("memory max = %d, %v; want 3", max, ok)
	}
	stop.Set(1)
	if _, err := mod.ExportedFunction("count").Call(context.Background(), 1000); err == nil ||
		!strings.Contains(err.Error(), "unreachable") {
		t.Errorf("count with the stop flag set: %v, want an unreachable trap", err)
	}
}

func TestRewriteOpcodes(t *testing.T) {
	bin, err := os.ReadFile("testdata/rewrite/opcodes.wasm")
	if err != nil {
		t.Fatal(err)
	}
	out, stats, err := rewriteModule(bin, rewriteOptions{interrupt: true, mergeData: true})
	if err != nil {
		t.Fatal(err)
	}
	if stats.functions != 6 || stats.checks != 9 {
		t.Errorf("stats = %+v, want 6 functions and 9 checks (see opcodes.wat)", stats)
	}
	orig, rewritten := instantiate(t, bin), instantiate(t, out)
	for _, tc := range []struct {
		fn  string
		arg uint64
	}{{"fact", 10}, {"loops", 100}, {"multi", 41}, {"early", 0}, {"early", 3}, {"mix", 2}} { // mix drops a segment: once only
		want, err := orig.ExportedFunction(tc.fn).Call(context.Background(), tc.arg)
		if err != nil {
			t.Fatalf("original %s: %v", tc.fn, err)
		}
		got, err := rewritten.ExportedFunction(tc.fn).Call(context.Background(), tc.arg)
		if err != nil || got[0] != want[0] {
			t.Errorf("rewritten %s(%d) = %v, %v; want %v", tc.fn, tc.arg, got, err, want)
		}
	}
}

func TestRewriteKeepsOtherBytes(t *testing.T) {
	bin, err := os.ReadFile(guestPath(t, "guest"))
	if err != nil {
		t.Fatal(err)
	}
	same, _, err := rewriteModule(bin, rewriteOptions{})
	if err != nil || !bytes.Equal(same, bin) {
		t.Fatalf("rewrite without options changed the module (err %v)", err)
	}
	out, stats, err := rewriteModule(bin, rewriteOptions{interrupt: true, memoryMaxPages: 1024})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := parseLayout(bin)
	after, err := parseLayout(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.sections) != len(after.sections) {
		t.Fatalf("%d sections became %d", len(before.sections), len(after.sections))
	}
	for i, s := range before.sections {
		changed := s.id == secGlobal || s.id == secExport || s.id == secCode || s.id == secMemory
		if !changed && !bytes.Equal(s.content, after.sections[i].content) {
			t.Errorf("section %d (id %d) changed", i, s.id)
		}
	}
	codeGrowth := 0
	for i, s := range before.sections {
		if s.id == secCode {
			codeGrowth = len(after.sections[i].content) - len(s.content)
		}
	}
	// A check is 4 or 5 bytes here (global 8, br_if to a depth under
	// 16384); wrapping adds 9 bytes to a body with checks, and re-encoding
	// its size may take up to 4 bytes off (Go pads sizes) or add 2.
	if min, max := stats.checks*4-stats.functions*4, stats.checks*5+stats.functions*11; codeGrowth < min || codeGrowth > max {
		t.Errorf("code grew by %d bytes for %d checks in %d functions", codeGrowth, stats.checks, stats.functions)
	}
}

func TestMergeDataKeepsMemory(t *testing.T) {
	seg := func(off int32, data string) []byte {
		b := appendSLEB([]byte{0x00, 0x41}, int64(off))
		b = append(b, 0x0b)
		b = binary.AppendUvarint(b, uint64(len(data)))
		return append(b, data...)
	}
	passive := append([]byte{0x01, 3}, "xyz"...)
	bin := wasmModule(
		sec(secMemory, vec([]byte{0x00, 0x01})),
		sec(secExport, vec(append([]byte{3}, "mem\x02\x00"...))),
		sec(secData, vec(seg(16, "hello"), seg(23, "world"), seg(200, "far"), passive, seg(300, "x"), seg(301, "y"))),
	)
	out, _, err := rewriteModule(bin, rewriteOptions{mergeData: true})
	if err != nil {
		t.Fatal(err)
	}
	layout, err := parseLayout(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range layout.sections {
		if n, _ := vectorCount(s.content); s.id == secData && n != 4 {
			t.Errorf("%d data segments, want 4 (16+23, 200, passive, 300+301)", n)
		}
	}
	a, b := instantiate(t, bin).Memory(), instantiate(t, out).Memory()
	va, _ := a.Read(0, a.Size())
	vb, _ := b.Read(0, b.Size())
	if !bytes.Equal(va, vb) {
		t.Error("memory differs after merging data segments")
	}
}

func TestRewriteErrors(t *testing.T) {
	good := countModule()
	tests := []struct {
		name string
		bin  []byte
		opts rewriteOptions
		want string
		is   error
	}{
		{"empty", nil, rewriteOptions{}, "bad magic", errdefs.ErrInvalid},
		{"text", []byte("(module)"), rewriteOptions{}, "bad magic", errdefs.ErrInvalid},
		{"truncated section", good[:len(good)-3], rewriteOptions{}, "truncated", errdefs.ErrInvalid},
		{"sections out of order", wasmModule(sec(secCode, vec()), sec(secType, vec())), rewriteOptions{}, "out of order", errdefs.ErrInvalid},
		{"unknown opcode", funcModule(0xe0, 0x0b), rewriteOptions{interrupt: true}, "unknown opcode", errdefs.ErrInvalid},
		{"body without end", funcModule(0x01), rewriteOptions{interrupt: true}, "does not end", errdefs.ErrInvalid},
		{"unbalanced end", funcModule(0x0b, 0x0b), rewriteOptions{interrupt: true}, "does not end", errdefs.ErrInvalid},
		{"overlong immediate", funcModule(0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b), rewriteOptions{interrupt: true},
			"bad immediate", errdefs.ErrInvalid},
		{"more bodies than functions", wasmModule(sec(secCode, vec(body(0x0b)))), rewriteOptions{interrupt: true},
			"1 bodies for 0 functions", errdefs.ErrInvalid},
		{"memory at the limit", good, rewriteOptions{memoryMaxPages: 1}, "", nil},
		{"export name taken", wasmModule(sec(secExport, vec(append([]byte{byte(len(interruptExport))}, interruptExport+"\x00\x00"...)))),
			rewriteOptions{interrupt: true}, "already exports", errdefs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := rewriteModule(tc.bin, tc.opts)
			if tc.is == nil {
				if err != nil {
					t.Fatalf("rewrite: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rewrite: %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
	big := wasmModule(sec(secMemory, vec([]byte{0x00, 0x05})))
	if _, _, err := rewriteModule(big, rewriteOptions{memoryMaxPages: 4}); !errors.Is(err, errdefs.ErrTooLarge) {
		t.Errorf("memory of 5 pages under a limit of 4: %v, want ErrTooLarge", err)
	}
}

// FuzzRewriteModule checks that the rewriter never panics and that it
// keeps every module wazero accepts acceptable.
func FuzzRewriteModule(f *testing.F) {
	f.Add(countModule())
	if bin, err := os.ReadFile("testdata/rewrite/opcodes.wasm"); err == nil {
		f.Add(bin)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, _, err := rewriteModule(bin, rewriteOptions{interrupt: true, mergeData: true, memoryMaxPages: 16})
		if err != nil {
			return
		}
		cm, err := rt.CompileModule(ctx, bin)
		if err != nil {
			return
		}
		_ = cm.Close(ctx)
		cm, err = rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its rewrite: %v", err)
		}
		_ = cm.Close(ctx)
	})
}
