// Package errdefs holds the few error categories every part of Tugboat reports.
//
// Components wrap one of these sentinels with context
// (fmt.Errorf("update %s: %w", key, errdefs.ErrConflict)) and callers test with
// errors.Is. Only the API edge converts a category into a Kubernetes
// metav1.Status and an HTTP code.
package errdefs

import "errors"

var (
	// ErrNotFound: the object or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a create found the key already present.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: a precondition (resourceVersion, uid) did not hold.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is malformed (bad key, bad revision, bad option).
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge: a value or request exceeds a configured limit.
	ErrTooLarge = errors.New("too large")
	// ErrGone: the requested revision has been compacted away.
	ErrGone = errors.New("gone")
	// ErrFutureRevision: the requested revision has not been written yet.
	ErrFutureRevision = errors.New("revision is in the future")
	// ErrUnavailable: the component is closed or cannot serve right now.
	ErrUnavailable = errors.New("unavailable")
	// ErrTooSlow: a consumer (a watcher) fell too far behind and was cut off.
	ErrTooSlow = errors.New("consumer too slow")
	// ErrPermission: the caller lacks the capability for the operation.
	ErrPermission = errors.New("permission denied")
	// ErrPluginTrap: a Wasm plugin trapped (panic, unreachable, memory fault).
	ErrPluginTrap = errors.New("plugin trapped")
	// ErrPluginTimeout: a Wasm plugin call exceeded its deadline.
	ErrPluginTimeout = errors.New("plugin timed out")
)
