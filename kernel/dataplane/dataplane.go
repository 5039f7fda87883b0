// Package dataplane declares what the node agent needs from a workload
// runtime: start a container, signal and stop it, report its state, run a
// command in it and tell when it changes. Each runtime lives in its own
// package beside this one (dataplane/exec: host processes; containerd and
// wasm runtimes slot in behind the same interface), and one conformance
// suite (dataplane/dataplanetest) runs against every runtime.
//
// A container is one attempt: restarting a container means starting a new
// one with the next Attempt number. The agent chooses IDs; runtimes persist
// enough to list their containers again after the agent restarts, so pods
// keep running across agent restarts and are never started twice.
package dataplane

import (
	"context"
	"io"
	"time"
)

// Runtime runs containers. Implementations are safe for concurrent use.
// Errors wrap errdefs sentinels: ErrNotFound for unknown IDs, ErrInvalid
// for specs the runtime cannot run, ErrAlreadyExists for a reused ID.
type Runtime interface {
	// Name is the runtime's name as the Node reports it ("exec").
	Name() string
	// Start starts a container. A command that cannot be started (not
	// found, not executable) is not an error: the container is reported
	// Exited with ExitCode 128 and Reason "StartError".
	Start(ctx context.Context, spec ContainerSpec) error
	// Stop sends SIGTERM to the container's processes, waits up to grace
	// for them to exit, then kills them; it returns once they are gone.
	// Stopping an exited container does nothing.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// State reports a container's state.
	State(id string) (State, error)
	// List reports every container the runtime knows, including those
	// started before the agent restarted.
	List() ([]State, error)
	// Remove forgets an exited container and deletes its files (logs
	// included); it stops it first if needed.
	Remove(ctx context.Context, id string) error
	// Exec runs a command in a running container's context and returns its
	// exit code.
	Exec(ctx context.Context, id string, spec ExecSpec) (int, error)
	// LogPath is the file the container's output is written to in CRI
	// log format ("<RFC3339Nano> <stdout|stderr> <F|P> <line>").
	LogPath(id string) string
	// Changes delivers the ID of a container whose state changed
	// (exited); the channel is never closed while the runtime is open.
	Changes() <-chan string
}

// ContainerSpec is one container attempt to run.
type ContainerSpec struct {
	// ID is unique per attempt (the agent uses <pod UID>-<name>-<attempt>).
	ID string
	// Labels are recorded and returned by List (pod UID, name, attempt).
	Labels map[string]string
	// Image is recorded; runtimes that run images pull or look it up.
	Image string
	// Command is the full argv (entrypoint + args, already expanded);
	// empty means the image's default.
	Command []string
	// Env is the environment, KEY=value.
	Env []string
	// WorkingDir is the working directory; empty means the runtime's own
	// per-container directory.
	WorkingDir string
	// Mounts are host paths to make visible at container paths.
	Mounts []Mount
	// MemoryLimit in bytes; 0 means none (applied where the runtime can).
	MemoryLimit int64
	// CPUMilli is the CPU limit in millicores; 0 means none.
	CPUMilli int64
	// TTY allocates a terminal; Stdin keeps stdin open (for attach).
	TTY, Stdin bool
	// NetNS is the path of the network namespace the container joins (the
	// pod's, shared by all its containers; commands run by Exec join it
	// too); empty means the host's network. Runtimes without network
	// namespaces (wasm) ignore it.
	NetNS string
}

// Mount makes HostPath visible at ContainerPath.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
}

// Status is a container's lifecycle state.
type Status int

// Container states.
const (
	Created Status = iota
	Running
	Exited
)

// State is a container's observed state.
type State struct {
	ID     string
	Labels map[string]string
	Image  string
	Status Status
	// Pid of the container's main process while it runs.
	Pid int
	// StartedAt and FinishedAt are zero until the container starts/ends.
	StartedAt, FinishedAt time.Time
	// ExitCode (128+signal for a signal) and Reason ("Completed", "Error",
	// "OOMKilled", "StartError") once Exited; Message explains a
	// StartError.
	ExitCode int
	Reason   string
	Message  string
}

// ExecSpec is a command to run in a container.
type ExecSpec struct {
	Command []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	TTY     bool
	// Resize delivers terminal sizes when TTY is set; may be nil.
	Resize <-chan TermSize
}

// TermSize is a terminal's size.
type TermSize struct {
	Width, Height uint16
}

// StatsProvider is implemented by runtimes that can measure their
// containers' resource use.
type StatsProvider interface {
	// Stats reports a running container's cumulative CPU time and current
	// memory use (ErrNotFound for unknown containers).
	Stats(id string) (Stats, error)
}

// Stats is a container's resource use.
type Stats struct {
	// CPU is the CPU time used since the container started.
	CPU time.Duration
	// MemoryBytes is the resident memory of its processes.
	MemoryBytes uint64
}
