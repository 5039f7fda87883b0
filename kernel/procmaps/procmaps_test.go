package procmaps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mapping
		ok   bool
	}{
		{"7f5d3bc00000-7f5d3c000000 rw-s 00000000 fe:00 10027494                   /tmp/a dir/000001.vlog",
			Mapping{Start: 0x7f5d3bc00000, End: 0x7f5d3c000000, Perms: "rw-s", Path: "/tmp/a dir/000001.vlog"}, true},
		{"7f5d3c000000-7f5d3c021000 rw-p 00000000 00:00 0 ",
			Mapping{Start: 0x7f5d3c000000, End: 0x7f5d3c021000, Perms: "rw-p"}, true},
		{"garbage", Mapping{}, false},
		{"zz-7f rw-p 0 0 0", Mapping{}, false},
		{"20-10 rw-p 0 0 0", Mapping{}, false},
	} {
		got, ok := parse(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// TestSelfAndAdvise maps a file, finds it in Self and advises it random,
// which /proc/self/smaps then shows as the rr flag.
func TestSelfAndAdvise(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mapped")
	if err := os.WriteFile(path, make([]byte, 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, 1<<16, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	maps, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	var found *Mapping
	for i := range maps {
		if maps[i].Path == path {
			found = &maps[i]
		}
	}
	if found == nil || found.End-found.Start != 1<<16 || found.Perms != "r--s" {
		t.Fatalf("mapping of %s not found as expected: %+v", path, found)
	}
	if err := found.Advise(unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	_, after, ok := strings.Cut(string(smaps), path+"\n")
	if !ok {
		t.Fatalf("%s not in smaps", path)
	}
	_, flags, _ := strings.Cut(after, "VmFlags:")
	flags, _, _ = strings.Cut(flags, "\n")
	if !strings.Contains(flags+" ", " rr ") {
		t.Fatalf("VmFlags after MADV_RANDOM = %q, want rr", flags)
	}
}
