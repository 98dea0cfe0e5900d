package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relay/store"
)

// gatedKeys is a store.Keys whose KeyByHash counts its calls and blocks until release is closed.
type gatedKeys struct {
	store.Keys // only KeyByHash is called
	calls      atomic.Int32
	started    chan struct{} // gets a value as each call starts
	release    chan struct{}
	known      map[string]store.Key
}

func (g *gatedKeys) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	g.calls.Add(1)
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return store.Key{}, ctx.Err()
	}
	if k, ok := g.known[hash]; ok {
		return k, nil
	}
	return store.Key{}, store.ErrNotFound
}

func newGatedKeys(secrets ...string) *gatedKeys {
	g := &gatedKeys{started: make(chan struct{}, 100), release: make(chan struct{}), known: map[string]store.Key{}}
	for i, s := range secrets {
		g.known[HashKey(s)] = store.Key{ID: int64(i + 1), Name: s}
	}
	return g
}

func TestKeyCacheConcurrentMissesShareOneQuery(t *testing.T) {
	g := newGatedKeys("sk-a")
	k := &keyCache{store: g, ttl: time.Minute, m: map[string]cachedKey{}}
	const callers = 20
	var wg sync.WaitGroup
	ids := make([]int64, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := k.lookup(context.Background(), "sk-a")
			errs[i] = err
			if err == nil {
				ids[i] = key.ID
			}
		}()
	}
	<-g.started
	// Give the other callers time to join the flight; any that came late would start a query of their own,
	// which the count below catches.
	time.Sleep(50 * time.Millisecond)
	close(g.release)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || ids[i] != 1 {
			t.Fatalf("caller %d: key %d, err %v", i, ids[i], errs[i])
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("%d store queries for %d concurrent misses on one key, want 1", n, callers)
	}
	// Cached now: no further query.
	if key, err := k.lookup(context.Background(), "sk-a"); err != nil || key.ID != 1 || g.calls.Load() != 1 {
		t.Fatalf("cached lookup: %v %v, %d queries", key, err, g.calls.Load())
	}
}

func TestKeyCacheCallerLeavesWithoutFailingOthers(t *testing.T) {
	g := newGatedKeys("sk-a")
	k := &keyCache{store: g, ttl: time.Minute, m: map[string]cachedKey{}}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := k.lookup(ctx, "sk-a")
		first <- err
	}()
	<-g.started
	second := make(chan error, 1)
	go func() {
		key, err := k.lookup(context.Background(), "sk-a")
		if err == nil && key.ID != 1 {
			err = errors.New("wrong key")
		}
		second <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-first:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("caller that left: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a caller whose context ended kept waiting for the store")
	}
	close(g.release)
	if err := <-second; err != nil {
		t.Fatalf("the other caller failed with the first one's cancellation: %v", err)
	}
}

func TestKeyCacheForgetDuringLookupDoesNotCache(t *testing.T) {
	g := newGatedKeys("sk-a")
	k := &keyCache{store: g, ttl: time.Minute, m: map[string]cachedKey{}}
	done := make(chan error, 1)
	go func() {
		_, err := k.lookup(context.Background(), "sk-a")
		done <- err
	}()
	<-g.started
	k.forget() // a revoke landed while the key was being read
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := k.lookup(context.Background(), "sk-a"); err != nil {
		t.Fatal(err)
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("%d store queries: a key read before forget was cached and served after it", n)
	}
}

func TestKeyCacheUnknownKeyNotCached(t *testing.T) {
	g := newGatedKeys()
	close(g.release)
	k := &keyCache{store: g, ttl: time.Minute, m: map[string]cachedKey{}}
	for range 2 {
		if _, err := k.lookup(context.Background(), "sk-new"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown key: %v, want ErrNotFound", err)
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("%d store queries for two lookups of an unknown key, want 2 (not cached)", n)
	}
}
