package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// etcdServer is a single-member etcd embedded in this process, with default
// durability (fsync on every commit), serving gRPC on a loopback port.
type etcdServer struct {
	e        *embed.Etcd
	endpoint string
	log      *closingWriter
}

// closingWriter passes etcd's error log to stderr until the server is being
// closed, when etcd reports its own listeners shutting down as errors.
type closingWriter struct {
	closing atomic.Bool
}

func (w *closingWriter) Write(p []byte) (int, error) {
	if w.closing.Load() {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

// startEtcd starts a fresh member with its data in dir and waits until it
// is ready to serve.
func startEtcd(dir string) (*etcdServer, error) {
	clientURL, err := freeURL()
	if err != nil {
		return nil, err
	}
	peerURL, err := freeURL()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "tugbench"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	logw := &closingWriter{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logw), zap.ErrorLevel)))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("start etcd: %w", err)
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("start etcd: not ready after 30s: %w", errdefs.ErrUnavailable)
	}
	return &etcdServer{e: e, endpoint: clientURL.Host, log: logw}, nil
}

// grpcClient connects a client over loopback gRPC, as the Kubernetes
// apiserver does.
func (s *etcdServer) grpcClient() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", s.endpoint, err)
	}
	return cli, nil
}

// inProcClient returns a client that calls the server directly, without
// gRPC or the network; it shows how much of etcd's cost is the transport.
func (s *etcdServer) inProcClient() *clientv3.Client {
	return v3client.New(s.e.Server)
}

func (s *etcdServer) close() {
	s.log.closing.Store(true)
	s.e.Close()
}

// freeURL picks a loopback port that is free right now.
func freeURL() (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	return &url.URL{Scheme: "http", Host: addr}, nil
}

// etcdTarget runs the workloads through an etcd client. A create is a
// transaction that puts the key only if its CreateRevision is 0 (absent),
// which is what the apiserver's storage layer sends for a create.
type etcdTarget struct {
	cli *clientv3.Client
}

var _ target = etcdTarget{}

func (t etcdTarget) create(ctx context.Context, key string, value []byte) (int64, error) {
	resp, err := t.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("create %s: %w", key, errdefs.ErrAlreadyExists)
	}
	return resp.Header.Revision, nil
}

func (t etcdTarget) revision(ctx context.Context) (int64, error) {
	resp, err := t.cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// watch opens a prefix watch from after+1 and returns once the server has
// confirmed it. All watches of one client and context share one gRPC stream.
func (t etcdTarget) watch(ctx context.Context, prefix string, after int64, deliver func(rev int64)) (*watchHandle, error) {
	ch := t.cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(after+1), clientv3.WithCreatedNotify())
	first, ok := <-ch
	if !ok {
		return nil, fmt.Errorf("watch %s: closed before it was created: %w", prefix, errdefs.ErrUnavailable)
	}
	if err := first.Err(); err != nil {
		return nil, fmt.Errorf("watch %s: %w", prefix, err)
	}
	h := &watchHandle{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for _, ev := range first.Events {
			deliver(ev.Kv.ModRevision)
		}
		for resp := range ch {
			for _, ev := range resp.Events {
				deliver(ev.Kv.ModRevision)
			}
			if err := resp.Err(); err != nil && ctx.Err() == nil {
				h.err = fmt.Errorf("watch %s: %w", prefix, err)
			}
		}
	}()
	return h, nil
}
