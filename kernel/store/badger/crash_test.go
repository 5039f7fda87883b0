package badger_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// The crash test re-executes the test binary as a child that writes as fast as
// it can and prints one line per acknowledged write; the parent kills it with
// SIGKILL at a random moment and checks, after reopening the same directory,
// that every acknowledged write survived.
const (
	crashDirEnv   = "TUGBOAT_CRASH_CHILD_DIR"
	crashRoundEnv = "TUGBOAT_CRASH_CHILD_ROUND"
	// crashWALAloneEnv makes the child keep every write in the write-ahead
	// log (no checkpoints), for the rounds that delete Badger's memtable logs.
	crashWALAloneEnv = "TUGBOAT_CRASH_CHILD_WAL_ALONE"
	// crashMemTable is the child's MemTableSize: small, so that a child's
	// short life sees log rotations, checkpoints, log trimming, value-log
	// rotations and memtable flushes.
	crashMemTable  = 2 << 20
	crashPrefix    = "/registry/crashtest/"
	crashWriters   = 16
	crashValueSize = 2048
	// crashChildLifetime bounds a child that its parent failed to kill.
	crashChildLifetime = 2 * time.Minute
)

// crashValue builds a ~2 KB value naming its key and sequence number and
// ending in a SHA-256 of everything before it, so a torn or misplaced value is
// detected on its own.
func crashValue(key string, round, seq int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "key=%s round=%d seq=%d\n", key, round, seq)
	for i := 0; b.Len() < crashValueSize-len("\nsum=")-2*sha256.Size; i++ {
		b.WriteByte('a' + byte((i*7+seq)%26))
	}
	b.WriteByte('\n')
	sum := sha256.Sum256(b.Bytes())
	b.WriteString("sum=")
	b.WriteString(hex.EncodeToString(sum[:]))
	return b.Bytes()
}

// checkCrashValue verifies a value built by crashValue for key.
func checkCrashValue(key string, v []byte) error {
	i := bytes.LastIndex(v, []byte("\nsum="))
	if i < 0 {
		return errors.New("no checksum trailer")
	}
	sum := sha256.Sum256(v[:i+1])
	if got, want := string(v[i+len("\nsum="):]), hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("checksum %s, content hashes to %s", got, want)
	}
	if !bytes.HasPrefix(v, []byte("key="+key+" ")) {
		line, _, _ := bytes.Cut(v, []byte("\n"))
		return fmt.Errorf("value belongs elsewhere: %q", line)
	}
	return nil
}

func valueHash(v []byte) string {
	sum := sha256.Sum256(v)
	return hex.EncodeToString(sum[:])
}

// ackWriter prints acknowledgement lines without interleaving them.
type ackWriter struct {
	mu sync.Mutex
}

func (a *ackWriter) line(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := os.Stdout.Write([]byte(fmt.Sprintf(format, args...) + "\n")); err != nil {
		// The parent is gone; nobody can check anything any more.
		os.Exit(3)
	}
}

// TestCrashChild is the child half of TestCrashDurability: it runs only when
// re-executed by it with TUGBOAT_CRASH_CHILD_DIR set, and writes until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child half of TestCrashDurability; runs only when re-executed by it with " + crashDirEnv + " set")
	}
	round, err := strconv.Atoi(os.Getenv(crashRoundEnv))
	if err != nil {
		t.Fatalf("bad %s: %v", crashRoundEnv, err)
	}
	out := &ackWriter{}
	opts := tbadger.Options{
		Dir:          dir,
		MemTableSize: crashMemTable,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if os.Getenv(crashWALAloneEnv) != "" {
		opts = tbadger.WithoutCheckpoints(opts)
	}
	s, err := tbadger.Open(opts)
	if err != nil {
		out.line("error open %s: %v", dir, err)
		t.Fatal(err)
	}
	ctx := t.Context()

	// Split the keys written by earlier rounds among the writers so that each
	// key has exactly one writer and its ifRevision preconditions must hold.
	owned := make([]map[string]int64, crashWriters)
	for i := range owned {
		owned[i] = map[string]int64{}
	}
	for kv, err := range listPaged(ctx, s, crashPrefix, 0) {
		if err != nil {
			out.line("error list: %v", err)
			t.Fatal(err)
		}
		h := fnv.New32a()
		h.Write([]byte(kv.Key))
		owned[h.Sum32()%crashWriters][kv.Key] = kv.ModRevision
	}

	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Go(func() { crashWriter(s, round, g, owned[g], out) })
	}
	wg.Wait() // only if every writer hit an error: the parent then fails
}

// crashWriter creates and updates keys until the process is killed. On any
// unexpected result it prints an "error" line, which fails the parent.
func crashWriter(s *tbadger.Store, round, g int, modRev map[string]int64, out *ackWriter) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
	keys := make([]string, 0, len(modRev))
	for k := range modRev {
		keys = append(keys, k)
	}
	deadline := time.Now().Add(crashChildLifetime)
	for seq := 0; time.Now().Before(deadline); seq++ {
		if len(keys) == 0 || rng.IntN(10) < 3 {
			key := fmt.Sprintf("%sr%02d-w%02d-%06d", crashPrefix, round, g, seq)
			v := crashValue(key, round, seq)
			kv, err := s.Create(ctx, key, v, store.WriteOptions{})
			if err != nil {
				out.line("error create %s: %v", key, err)
				return
			}
			if kv.Key != key || kv.ModRevision <= 0 || kv.CreateRevision != kv.ModRevision {
				out.line("error create %s returned key %s create %d mod %d", key, kv.Key, kv.CreateRevision, kv.ModRevision)
				return
			}
			keys = append(keys, key)
			modRev[key] = kv.ModRevision
			out.line("%s %d %s", key, kv.ModRevision, valueHash(v))
			continue
		}
		key := keys[rng.IntN(len(keys))]
		var ifRev int64
		if rng.IntN(2) == 0 {
			ifRev = modRev[key]
		}
		v := crashValue(key, round, seq)
		kv, err := s.Update(ctx, key, v, ifRev, store.WriteOptions{})
		if err != nil {
			out.line("error update %s if %d (last acknowledged %d): %v", key, ifRev, modRev[key], err)
			return
		}
		if kv.Key != key || kv.ModRevision <= modRev[key] {
			out.line("error update %s returned key %s mod %d, previous %d", key, kv.Key, kv.ModRevision, modRev[key])
			return
		}
		modRev[key] = kv.ModRevision
		out.line("%s %d %s", key, kv.ModRevision, valueHash(v))
	}
	out.line("error writer %d ran for %v without being killed", g, crashChildLifetime)
}

// crashAck is one acknowledged write, or one state the parent observed after
// a clean reopen (which later rounds must preserve just the same).
type crashAck struct {
	rev  int64
	hash string
	from string
}

// crashChildRun is what one child printed before it was killed.
type crashChildRun struct {
	acks   map[int64]crashAck // by revision
	keyOf  map[int64]string
	errors []string // "error" lines
	other  []string // anything else (test framework noise)
}

// TestCrashDurability kill -9s a writing child at random moments and checks
// that every acknowledged write survives, with the store checkpointing and
// trimming its log as it does in production.
func TestCrashDurability(t *testing.T) { crashRounds(t, 20, 5, false) }

// TestCrashDurabilityWALAlone also deletes Badger's memtable logs after every
// other kill, so the acknowledged writes Badger had not flushed must come
// back from the write-ahead log alone. The child runs without checkpoints:
// a checkpoint makes the memtable logs durable and lets the log below it go,
// and a machine crash cannot take synced data back (deleting the files
// would model a loss no crash causes).
func TestCrashDurabilityWALAlone(t *testing.T) { crashRounds(t, 10, 4, true) }

// crashRounds runs rounds children (short ones with -short), each killed at
// a random moment, and checks the store after each.
func crashRounds(t *testing.T, rounds, short int, walAlone bool) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the crash child")
	}
	if testing.Short() {
		rounds = short
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	floor := map[string]crashAck{} // per key: the newest state that must survive
	seenRev := map[int64]string{}  // every acknowledged revision -> key
	var prevRev int64
	total := 0
	for round := range rounds {
		run := runCrashChild(t, dir, round, walAlone, rng)
		for _, e := range run.errors {
			t.Errorf("round %d: child reported: %s", round, e)
		}
		for rev, ack := range run.acks {
			key := run.keyOf[rev]
			if other, dup := seenRev[rev]; dup {
				t.Errorf("round %d: revision %d acknowledged for %s and earlier for %s", round, rev, key, other)
			}
			seenRev[rev] = key
			if rev <= prevRev {
				t.Errorf("round %d: write to %s acknowledged at revision %d, not after the %d the store had at the start of the round", round, key, rev, prevRev)
			}
			if f, ok := floor[key]; !ok || rev > f.rev {
				floor[key] = ack
			}
		}
		total += len(run.acks)
		if walAlone && round%2 == 1 {
			// Without checkpoints Badger's memtable logs are never synced:
			// a machine crash may lose any part of them. Lose all of them.
			loseUnsyncedMemtables(t, dir)
		}
		prevRev = verifyCrashRound(t, dir, round, floor, seenRev, prevRev)
		if t.Failed() {
			t.Fatalf("stopping after round %d (%d acknowledged writes so far)", round, total)
		}
	}
	t.Logf("%d rounds, %d acknowledged writes, final revision %d", rounds, total, prevRev)
}

// loseUnsyncedMemtables deletes Badger's memtable log files in dir.
func loseUnsyncedMemtables(t *testing.T, dir string) {
	t.Helper()
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mems {
		if err := os.Remove(m); err != nil {
			t.Fatal(err)
		}
	}
}

// runCrashChild starts the child on dir, kills it 100-600 ms after its first
// acknowledgement and returns everything it printed.
func runCrashChild(t *testing.T, dir string, round int, walAlone bool, rng *rand.Rand) crashChildRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
	if walAlone {
		cmd.Env = append(cmd.Env, crashWALAloneEnv+"=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	run := crashChildRun{acks: map[int64]crashAck{}, keyOf: map[int64]string{}}
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A line without its newline was cut by the kill: not an ack.
				return
			}
			line = strings.TrimSuffix(line, "\n")
			key, rev, hash, ok := parseCrashAck(line)
			switch {
			case ok:
				if len(run.acks) == 0 {
					close(first)
				}
				if _, dup := run.acks[rev]; dup {
					run.errors = append(run.errors, fmt.Sprintf("revision %d acknowledged twice (%s and %s)", rev, run.keyOf[rev], key))
				}
				run.acks[rev] = crashAck{rev: rev, hash: hash, from: fmt.Sprintf("acknowledged in round %d", round)}
				run.keyOf[rev] = key
			case strings.HasPrefix(line, "error "):
				run.errors = append(run.errors, strings.TrimPrefix(line, "error "))
			default:
				run.other = append(run.other, line)
			}
		}
	}()
	select {
	case <-first:
	case <-done:
		_ = cmd.Wait()
		t.Fatalf("round %d: child exited before acknowledging a write: %v\nerrors: %q\nstdout: %q\nstderr:\n%s", round, cmd.ProcessState, run.errors, run.other, lastBytes(stderr.String()))
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		t.Fatalf("round %d: child acknowledged nothing within a minute\nstderr:\n%s", round, lastBytes(stderr.String()))
	}
	time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond))))
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("round %d: kill child: %v", round, err)
	}
	<-done
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("round %d: child ended with %v before it was killed\nstdout: %q\nstderr:\n%s", round, cmd.ProcessState, run.other, lastBytes(stderr.String()))
	}
	if s := stderr.String(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") || strings.Contains(s, "fatal error:") {
		t.Errorf("round %d: child stderr:\n%s", round, lastBytes(s))
	}
	return run
}

// parseCrashAck parses "<key> <revision> <sha256-hex>".
func parseCrashAck(line string) (key string, rev int64, hash string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[0], crashPrefix) || len(f[2]) != 2*sha256.Size {
		return "", 0, "", false
	}
	rev, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", 0, "", false
	}
	if _, err := hex.DecodeString(f[2]); err != nil {
		return "", 0, "", false
	}
	return f[0], rev, f[2], true
}

// verifyCrashRound reopens dir and checks it against floor: every key there
// must exist with exactly that revision and value, or a newer revision; and
// against seenRev, every acknowledged revision and its key. It then raises
// floor to what it observed and returns Revision().
func verifyCrashRound(t *testing.T, dir string, round int, floor map[string]crashAck, seenRev map[int64]string, prevRev int64) int64 {
	t.Helper()
	s, err := tbadger.Open(tbadger.Options{Dir: dir, MemTableSize: crashMemTable, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("round %d: reopen after kill -9: %v", round, err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("round %d: close: %v", round, err)
		}
	}()
	ctx := t.Context()
	rev := s.Revision()
	if rev < prevRev {
		t.Errorf("round %d: Revision() after reopen is %d, went back from %d", round, rev, prevRev)
	}
	var maxFloor int64
	for _, f := range floor {
		maxFloor = max(maxFloor, f.rev)
	}
	if rev < maxFloor {
		t.Errorf("round %d: Revision() after reopen is %d, below the acknowledged revision %d", round, rev, maxFloor)
	}

	got := map[string]store.KV{}
	for kv, err := range listPaged(ctx, s, crashPrefix, 0) {
		if err != nil {
			t.Fatalf("round %d: list after reopen: %v", round, err)
		}
		if err := checkCrashValue(kv.Key, kv.Value); err != nil {
			t.Errorf("round %d: %s at revision %d: corrupt value: %v", round, kv.Key, kv.ModRevision, err)
		}
		if kv.CreateRevision <= 0 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > rev {
			t.Errorf("round %d: %s has create revision %d, mod revision %d, store revision %d", round, kv.Key, kv.CreateRevision, kv.ModRevision, rev)
		}
		got[kv.Key] = kv
	}
	// One write touches one key, so no two keys share a ModRevision, and an
	// acknowledged revision belongs to the key it was acknowledged for.
	owner := map[int64]string{}
	for key, kv := range got {
		if other, dup := owner[kv.ModRevision]; dup {
			t.Errorf("round %d: %s and %s both have mod revision %d (a revision was reused)", round, key, other, kv.ModRevision)
		}
		owner[kv.ModRevision] = key
		if acked, ok := seenRev[kv.ModRevision]; ok && acked != key {
			t.Errorf("round %d: %s has mod revision %d, which was acknowledged for a write to %s", round, key, kv.ModRevision, acked)
		}
	}
	lost := 0
	for key, f := range floor {
		kv, ok := got[key]
		switch {
		case !ok:
			lost++
			if lost <= 10 {
				t.Errorf("round %d: %s (revision %d, %s) is missing after reopen", round, key, f.rev, f.from)
			}
		case kv.ModRevision < f.rev:
			lost++
			if lost <= 10 {
				t.Errorf("round %d: %s is at revision %d after reopen, older than revision %d %s", round, key, kv.ModRevision, f.rev, f.from)
			}
		case kv.ModRevision == f.rev && valueHash(kv.Value) != f.hash:
			lost++
			if lost <= 10 {
				t.Errorf("round %d: %s at revision %d has value hash %s, want %s (%s)", round, key, f.rev, valueHash(kv.Value), f.hash, f.from)
			}
		}
	}
	if lost > 10 {
		t.Errorf("round %d: %d keys lost or stale in all", round, lost)
	}

	// Point reads agree with the list.
	n := 0
	for key, want := range got {
		if n++; n > 50 {
			break
		}
		kv, err := s.Get(ctx, key)
		if err != nil || kv.ModRevision != want.ModRevision || !bytes.Equal(kv.Value, want.Value) {
			t.Errorf("round %d: Get(%s) = revision %d, %v; list had revision %d", round, key, kv.ModRevision, err, want.ModRevision)
		}
	}

	for key, kv := range got {
		floor[key] = crashAck{rev: kv.ModRevision, hash: valueHash(kv.Value), from: fmt.Sprintf("observed after reopen in round %d", round)}
	}
	t.Logf("round %d: %d keys, revision %d", round, len(got), rev)
	return rev
}

// lastBytes returns the last few KB of s.
func lastBytes(s string) string {
	const n = 4096
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// listPaged iterates over every key under prefix, a page at a time, all pages
// read at the revision of the first (or at rev if not 0).
func listPaged(ctx context.Context, r store.Reader, prefix string, rev int64) iter.Seq2[store.KV, error] {
	return func(yield func(store.KV, error) bool) {
		opts := store.ListOptions{Limit: 500, Revision: rev}
		last := ""
		for {
			page, err := r.List(ctx, prefix, opts)
			if err != nil {
				yield(store.KV{}, err)
				return
			}
			if len(page.KVs) > opts.Limit {
				yield(store.KV{}, fmt.Errorf("list %s: %d keys in a page limited to %d", prefix, len(page.KVs), opts.Limit))
				return
			}
			for _, kv := range page.KVs {
				if !strings.HasPrefix(kv.Key, prefix) || kv.Key <= last {
					yield(store.KV{}, fmt.Errorf("list %s: key %q after %q", prefix, kv.Key, last))
					return
				}
				last = kv.Key
				if !yield(kv, nil) {
					return
				}
			}
			if !page.More {
				return
			}
			if len(page.KVs) == 0 {
				yield(store.KV{}, fmt.Errorf("list %s: empty page with More set", prefix))
				return
			}
			opts.Revision = page.Revision
			opts.StartKey = page.KVs[len(page.KVs)-1].Key + "\x00"
		}
	}
}
