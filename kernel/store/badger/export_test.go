package badger

// WithoutCheckpoints returns o with checkpoints off: the write-ahead log is
// never trimmed, so it holds every write that Badger's memtable logs hold
// (for tests that delete those logs).
func WithoutCheckpoints(o Options) Options {
	o.noCheckpoints = true
	return o
}
