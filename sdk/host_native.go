//go:build !wasip1

package sdk

// defaultHost is, natively, a Host that has nothing: Get, List, Write and
// Now answer ErrNoHost and logs are dropped.
func defaultHost() Host { return noHost{} }

type noHost struct{}

func (noHost) Log(Level, string)                  {}
func (noHost) Get(GetRequest) ([]byte, error)     { return nil, ErrNoHost }
func (noHost) List(ListRequest) ([][]byte, error) { return nil, ErrNoHost }
func (noHost) Write(WriteRequest) ([]byte, error) { return nil, ErrNoHost }
func (noHost) Now() (int64, error)                { return 0, ErrNoHost }
