package badger_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

type linOp uint8

const (
	linCreate linOp = iota
	linGet
	linUpdate
	linDelete
)

func (o linOp) String() string {
	return [...]string{"create", "get", "update", "delete"}[o]
}

// linOutcome is the category of a call's result.
type linOutcome uint8

const (
	linOK linOutcome = iota
	linNotFound
	linExists
	linConflict
)

func (o linOutcome) String() string {
	return [...]string{"ok", "not found", "already exists", "conflict"}[o]
}

// linInput is one call. IfRev is the precondition of update and delete.
type linInput struct {
	Op    linOp
	Key   string
	Value string
	IfRev int64
}

// linOutput is one result. For get, create and update the fields describe the
// returned KV; for delete they describe the returned previous KV and Rev is
// the revision of the deletion.
type linOutput struct {
	Outcome   linOutcome
	Value     string
	CreateRev int64
	ModRev    int64
	Rev       int64
}

// linState is the model of one key. ModRev of a deleted key is the revision
// of its deletion, so a later create must come after it.
type linState struct {
	Exists    bool
	Value     string
	CreateRev int64
	ModRev    int64
}

// linStep is the sequential specification of one key of store.Store.
func linStep(st linState, in linInput, out linOutput) (bool, linState) {
	precondition := in.IfRev == 0 || in.IfRev == st.ModRev
	switch in.Op {
	case linGet:
		switch out.Outcome {
		case linOK:
			return st.Exists && out.Value == st.Value && out.CreateRev == st.CreateRev && out.ModRev == st.ModRev, st
		case linNotFound:
			return !st.Exists, st
		}
	case linCreate:
		switch out.Outcome {
		case linOK:
			ok := !st.Exists && out.ModRev > st.ModRev && out.CreateRev == out.ModRev && out.Value == in.Value
			return ok, linState{Exists: true, Value: in.Value, CreateRev: out.ModRev, ModRev: out.ModRev}
		case linExists:
			return st.Exists, st
		}
	case linUpdate:
		switch out.Outcome {
		case linOK:
			ok := st.Exists && precondition && out.ModRev > st.ModRev && out.CreateRev == st.CreateRev && out.Value == in.Value
			return ok, linState{Exists: true, Value: in.Value, CreateRev: st.CreateRev, ModRev: out.ModRev}
		case linNotFound:
			return !st.Exists, st
		case linConflict:
			return st.Exists && !precondition, st
		}
	case linDelete:
		switch out.Outcome {
		case linOK:
			ok := st.Exists && precondition && out.Value == st.Value && out.CreateRev == st.CreateRev &&
				out.ModRev == st.ModRev && out.Rev > st.ModRev
			return ok, linState{ModRev: out.Rev}
		case linNotFound:
			return !st.Exists, st
		case linConflict:
			return st.Exists && !precondition, st
		}
	}
	return false, st
}

func linModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(linInput).Key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			parts := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, byKey[k])
			}
			return parts
		},
		Init: func() any { return linState{} },
		Step: func(state, input, output any) (bool, any) {
			return linStep(state.(linState), input.(linInput), output.(linOutput))
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			s := fmt.Sprintf("%s(%s", in.Op, in.Key)
			if in.Value != "" {
				s += ", " + in.Value
			}
			if in.IfRev != 0 {
				s += fmt.Sprintf(", if %d", in.IfRev)
			}
			s += ") -> " + out.Outcome.String()
			if out.Outcome == linOK {
				s += fmt.Sprintf(" %q create %d mod %d", out.Value, out.CreateRev, out.ModRev)
				if in.Op == linDelete {
					s += fmt.Sprintf(" deleted at %d", out.Rev)
				}
			}
			return s
		},
		DescribeState: func(state any) string {
			st := state.(linState)
			if !st.Exists {
				return fmt.Sprintf("absent (since %d)", st.ModRev)
			}
			return fmt.Sprintf("%q create %d mod %d", st.Value, st.CreateRev, st.ModRev)
		},
	}
}

// linCall performs in against s and categorizes the result.
func linCall(t testing.TB, s store.Store, in linInput) linOutput {
	ctx := t.Context()
	var (
		kv  store.KV
		rev int64
		err error
	)
	switch in.Op {
	case linCreate:
		kv, err = s.Create(ctx, in.Key, []byte(in.Value), store.WriteOptions{})
		rev = kv.ModRevision
	case linGet:
		kv, err = s.Get(ctx, in.Key)
	case linUpdate:
		kv, err = s.Update(ctx, in.Key, []byte(in.Value), in.IfRev, store.WriteOptions{})
		rev = kv.ModRevision
	case linDelete:
		kv, rev, err = s.Delete(ctx, in.Key, in.IfRev)
	}
	out := linOutput{Value: string(kv.Value), CreateRev: kv.CreateRevision, ModRev: kv.ModRevision, Rev: rev}
	switch {
	case err == nil:
		if kv.Key != in.Key {
			t.Errorf("%s(%s) returned key %q", in.Op, in.Key, kv.Key)
		}
		out.Outcome = linOK
	case errors.Is(err, errdefs.ErrNotFound):
		out = linOutput{Outcome: linNotFound}
	case errors.Is(err, errdefs.ErrAlreadyExists):
		out = linOutput{Outcome: linExists}
	case errors.Is(err, errdefs.ErrConflict):
		out = linOutput{Outcome: linConflict}
	default:
		t.Errorf("%s(%s): unexpected error %v", in.Op, in.Key, err)
		out = linOutput{Outcome: linConflict}
	}
	return out
}

// linClient runs ops random operations over keys and returns its history.
// Preconditions come from the revision the client last observed for the key.
func linClient(t testing.TB, s store.Store, client int, ops int, keys []string, clock func() int64) []porcupine.Operation {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(client)))
	last := map[string]int64{}
	history := make([]porcupine.Operation, 0, ops)
	for i := range ops {
		key := keys[rng.IntN(len(keys))]
		in := linInput{Key: key}
		switch r := rng.IntN(10); {
		case r < 2:
			in.Op = linCreate
		case r < 5:
			in.Op = linGet
		case r < 8:
			in.Op = linUpdate
		default:
			in.Op = linDelete
		}
		if in.Op == linCreate || in.Op == linUpdate {
			in.Value = fmt.Sprintf("c%d-%d", client, i)
		}
		if (in.Op == linUpdate || in.Op == linDelete) && rng.IntN(2) == 0 {
			in.IfRev = max(last[key], 1)
		}
		call := clock()
		out := linCall(t, s, in)
		ret := clock()
		if out.Outcome == linOK {
			last[key] = out.ModRev
			if in.Op != linGet {
				rev := out.ModRev
				if in.Op == linDelete {
					rev = out.Rev
				}
				if r := s.Revision(); r < rev {
					t.Errorf("%s(%s) acknowledged revision %d but Revision() is then %d", in.Op, key, rev, r)
				}
			}
		}
		history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	}
	return history
}

func TestLinearizable(t *testing.T) {
	const (
		clients = 8
		ops     = 300
	)
	s := openScratchStore(t, tbadger.Options{})
	keys := []string{
		store.Key("configmaps", "lin", "a"),
		store.Key("configmaps", "lin", "b"),
		store.Key("configmaps", "lin", "c"),
		store.Key("configmaps", "lin", "d"),
		store.Key("configmaps", "lin", "e"),
	}
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }

	histories := make([][]porcupine.Operation, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() { histories[c] = linClient(t, s, c, ops, keys, clock) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	history := slices.Concat(histories...)
	checkWriteRevisions(t, history)

	res, info := porcupine.CheckOperationsVerbose(linModel(), history, 0)
	if res != porcupine.Ok {
		f, err := os.CreateTemp("", "tugboat-linearizability-*.html")
		if err != nil {
			t.Fatalf("history is %s (and no file for the visualization: %v)", res, err)
		}
		if err := porcupine.Visualize(linModel(), info, f); err != nil {
			t.Errorf("visualize: %v", err)
		}
		f.Close()
		t.Fatalf("history of %d operations is %s; visualization in %s", len(history), res, f.Name())
	}
	writes := 0
	for _, op := range history {
		if op.Input.(linInput).Op != linGet && op.Output.(linOutput).Outcome == linOK {
			writes++
		}
	}
	t.Logf("%d operations (%d successful writes) linearizable", len(history), writes)
}

// checkWriteRevisions checks what the per-key model cannot: successful writes
// to all keys have distinct revisions, ordered as the writes are in real time.
func checkWriteRevisions(t testing.TB, history []porcupine.Operation) {
	t.Helper()
	type write struct {
		op  porcupine.Operation
		rev int64
	}
	var writes []write
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if in.Op == linGet || out.Outcome != linOK {
			continue
		}
		rev := out.ModRev
		if in.Op == linDelete {
			rev = out.Rev
		}
		writes = append(writes, write{op, rev})
	}
	byRev := map[int64]porcupine.Operation{}
	for _, w := range writes {
		if other, dup := byRev[w.rev]; dup {
			t.Errorf("revision %d assigned to %+v and %+v", w.rev, other.Input, w.op.Input)
		}
		byRev[w.rev] = w.op
	}
	slices.SortFunc(writes, func(a, b write) int { return cmp.Compare(a.op.Call, b.op.Call) })
	errs := 0
	for i, b := range writes {
		for _, a := range writes[:i] {
			if a.op.Return < b.op.Call && a.rev >= b.rev && errs < 10 {
				errs++
				t.Errorf("%+v returned revision %d before %+v started, which got revision %d", a.op.Input, a.rev, b.op.Input, b.rev)
			}
		}
	}
}
