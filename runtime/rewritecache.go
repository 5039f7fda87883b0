package runtime

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
)

// rewriteVersion names the output of rewriteModule: change it whenever the
// same input and options would be rewritten differently, so that cached
// rewrites of the old version are not used.
const rewriteVersion = 1

// rewriteCache keeps rewritten modules on disk next to wazero's
// compilation cache, so a warm start reads the rewritten bytes instead of
// rewriting again (about 10 ms for a 2 MB plugin). wazero keys compiled
// code by the rewritten bytes, which therefore must come out the same.
// Like wazero's cache, the directory must be protected from other writers:
// a tampered entry could drop the interrupt checks.
type rewriteCache struct {
	dir string // "" keeps nothing
}

func newRewriteCache(cacheDir string) (rewriteCache, error) {
	if cacheDir == "" {
		return rewriteCache{}, nil
	}
	dir := filepath.Join(cacheDir, "tugboat-rewrite")
	return rewriteCache{dir: dir}, os.MkdirAll(dir, 0o700)
}

// path is where the rewrite of bin with opts is kept.
func (c rewriteCache) path(bin []byte, opts rewriteOptions) string {
	h := sha256.New()
	var meta []byte
	meta = binary.AppendUvarint(meta, rewriteVersion)
	meta = binary.AppendUvarint(meta, uint64(opts.memoryMaxPages))
	var flags byte
	if opts.interrupt {
		flags |= 1
	}
	if opts.mergeData {
		flags |= 2
	}
	if opts.exportGlobals {
		flags |= 4
	}
	h.Write(append(meta, flags))
	h.Write(bin)
	return filepath.Join(c.dir, hex.EncodeToString(h.Sum(nil))+".wasm")
}

// rewrite returns the rewrite of bin, from the cache when it has it;
// cached reports which.
func (c rewriteCache) rewrite(bin []byte, opts rewriteOptions) (out []byte, cached bool, err error) {
	if c.dir == "" {
		out, _, err = rewriteModule(bin, opts)
		return out, false, err
	}
	path := c.path(bin, opts)
	if out, err := os.ReadFile(path); err == nil {
		return out, true, nil
	}
	out, _, err = rewriteModule(bin, opts)
	if err != nil {
		return nil, false, err
	}
	// Best effort: a failed write only costs the next start a rewrite.
	if tmp, err := os.CreateTemp(c.dir, "tmp-*"); err == nil {
		_, werr := tmp.Write(out)
		cerr := tmp.Close()
		if werr == nil && cerr == nil {
			_ = os.Rename(tmp.Name(), path)
		} else {
			_ = os.Remove(tmp.Name())
		}
	}
	return out, false, nil
}

// forget drops the cached rewrite of bin (it did not compile).
func (c rewriteCache) forget(bin []byte, opts rewriteOptions) {
	if c.dir != "" {
		_ = os.Remove(c.path(bin, opts))
	}
}
