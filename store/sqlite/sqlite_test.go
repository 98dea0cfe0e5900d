package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

// testTimeout bounds every blocking step of these tests (Close, waits on goroutines, queries).
const testTimeout = 60 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "relay.db") }

// openStore opens path with a quiet logger (unless opt has one) and closes it at cleanup.
func openStore(t testing.TB, path string, opt sqlite.Options) *sqlite.Store {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quietLogger()
	}
	s, err := sqlite.Open(path, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() }) // a second Close must be harmless
	return s
}

// within runs f and fails the test if it does not return in d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

func closeStore(t testing.TB, s *sqlite.Store) {
	t.Helper()
	var err error
	within(t, testTimeout, "Close", func() { err = s.Close() })
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func countLogs(t testing.TB, path string) int {
	t.Helper()
	s := openStore(t, path, sqlite.Options{})
	n, err := s.CountLogs(ctxT(t))
	if err != nil {
		t.Fatalf("CountLogs: %v", err)
	}
	closeStore(t, s)
	return n
}

func logRow(id string) store.LogRow {
	return store.LogRow{
		Time: time.Now(), RequestID: id, KeyID: 1, Surface: "openai", Model: "demo", UpstreamModel: "demo",
		Channel: "demo", Stream: true, Status: 200, Latency: 12 * time.Millisecond, TTFB: 3 * time.Millisecond,
		Usage: store.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30},
	}
}

// --- open, pragmas, migrations ---

func TestOpenPragmasOnEveryConnection(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "sub", "dir", "relay.db"), sqlite.Options{BusyTimeout: 1234 * time.Millisecond})
	ctx := ctxT(t)
	// Hold several connections at once so the pool has to open new ones: the pragmas come from the DSN,
	// so every one of them must have them, not just the first.
	for i := 0; i < 4; i++ {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var mode string
		var busy, fk, sync int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" {
			t.Errorf("conn %d: journal_mode = %q, want wal", i, mode)
		}
		if busy != 1234 {
			t.Errorf("conn %d: busy_timeout = %d, want 1234", i, busy)
		}
		if fk != 1 {
			t.Errorf("conn %d: foreign_keys = %d, want 1", i, fk)
		}
		if sync != 1 { // NORMAL
			t.Errorf("conn %d: synchronous = %d, want 1 (NORMAL)", i, sync)
		}
	}
}

func TestOpenDefaultBusyTimeout(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	var busy int
	if err := s.DB().QueryRowContext(ctxT(t), "PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if busy != 5000 {
		t.Fatalf("default busy_timeout = %d, want 5000", busy)
	}
}

func TestDSN(t *testing.T) {
	dsn := sqlite.DSN("/x/relay.db", 2500*time.Millisecond)
	if !strings.HasPrefix(dsn, "file:/x/relay.db?") {
		t.Fatalf("DSN %q does not start with file:/x/relay.db?", dsn)
	}
	for _, want := range []string{"_txlock=immediate", "busy_timeout%282500%29", "journal_mode%28WAL%29", "foreign_keys%28ON%29", "synchronous%28NORMAL%29"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN %q lacks %q", dsn, want)
		}
	}
}

// With _txlock=immediate, BeginTx takes the write lock at once: a second writer's BeginTx waits
// busy_timeout and fails, instead of starting a deferred transaction that fails later at its first write.
func TestWriteTransactionsAreImmediate(t *testing.T) {
	path := dbPath(t)
	a := openStore(t, path, sqlite.Options{})
	b := openStore(t, path, sqlite.Options{BusyTimeout: 100 * time.Millisecond})
	ctx := ctxT(t)
	tx, err := a.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	start := time.Now()
	tx2, err := b.DB().BeginTx(ctx, nil)
	if err == nil {
		tx2.Rollback()
		t.Fatal("second BeginTx succeeded while another connection holds a write transaction: not BEGIN IMMEDIATE")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "busy") && !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second BeginTx: %v, want SQLITE_BUSY", err)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Fatalf("second BeginTx failed after %v, want it to wait busy_timeout (100ms)", el)
	}
}

func migrationVersions(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			out = append(out, strings.TrimSuffix(e.Name(), ".sql"))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatal("no migrations found")
	}
	return out
}

func appliedVersions(t *testing.T, s *sqlite.Store) []string {
	t.Helper()
	rows, err := s.DB().QueryContext(ctxT(t), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateIdempotent(t *testing.T) {
	want := migrationVersions(t)
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	ctx := ctxT(t)
	if got := appliedVersions(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Open: schema_migrations = %v, want %v", got, want)
	}
	// Data written before re-running migrations must survive them.
	if _, err := s.CreateKey(ctx, store.Key{Name: "k", Prefix: "sk-1", Hash: "h1"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := sqlite.Migrate(ctx, s.DB()); err != nil {
			t.Fatalf("Migrate run %d: %v", i+2, err)
		}
	}
	if got := appliedVersions(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Migrate x2: schema_migrations = %v, want %v (one row per file)", got, want)
	}
	closeStore(t, s)

	// Reopening runs Migrate again through Open.
	s2 := openStore(t, path, sqlite.Options{})
	if got := appliedVersions(t, s2); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: schema_migrations = %v, want %v", got, want)
	}
	keys, err := s2.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Name != "k" {
		t.Fatalf("keys after reopen = %+v, want the one key", keys)
	}
}

// Two processes starting at once on a fresh database (say `relay serve` and `relay keys create`) both
// run the migrations.
func TestConcurrentOpenFreshFile(t *testing.T) {
	for round := 0; round < 10; round++ {
		path := dbPath(t)
		const n = 4
		errs := make([]error, n)
		stores := make([]*sqlite.Store, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				stores[i], errs[i] = sqlite.Open(path, sqlite.Options{Logger: quietLogger()})
			}(i)
		}
		close(start)
		within(t, testTimeout, "concurrent Open", wg.Wait)
		for i := 0; i < n; i++ {
			if stores[i] != nil {
				stores[i].Close()
			}
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Open of a fresh database failed (round %d, opener %d): %v", round, i, err)
			}
		}
	}
}

// --- keys ---

func TestKeys(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	base := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

	list, err := s.ListKeys(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListKeys on empty store = %v, %v; want none", list, err)
	}

	mk := func(name, hash string, created time.Time, models []string) store.Key {
		t.Helper()
		k, err := s.CreateKey(ctx, store.Key{Name: name, Prefix: "sk-" + hash, Hash: hash, Models: models, CreatedAt: created})
		if err != nil {
			t.Fatalf("CreateKey(%s): %v", name, err)
		}
		if k.ID <= 0 {
			t.Fatalf("CreateKey(%s) id = %d", name, k.ID)
		}
		return k
	}
	old := mk("old", "h-old", base, nil)
	mid := mk("mid", "h-mid", base.Add(time.Hour), []string{"gpt-4o", "demo"})
	newest := mk("new", "h-new", base.Add(2*time.Hour), []string{"demo"})
	// Same second as newest: the later id comes first.
	twin := mk("twin", "h-twin", base.Add(2*time.Hour), nil)

	if _, err := s.CreateKey(ctx, store.Key{Name: "dup", Prefix: "x", Hash: "h-old"}); err == nil {
		t.Fatal("CreateKey with a duplicate hash succeeded")
	}

	// CreatedAt defaults to now.
	before := time.Now().Add(-time.Second)
	now := mk("now", "h-now", time.Time{}, nil)
	if now.CreatedAt.Before(before) || now.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("default CreatedAt = %v, want about now", now.CreatedAt)
	}

	list, err = s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range list {
		names = append(names, k.Name)
	}
	if want := []string{"now", "twin", "new", "mid", "old"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ListKeys order = %v, want %v (newest first, then id desc)", names, want)
	}

	// KeyByHash round-trips every field.
	got, err := s.KeyByHash(ctx, "h-mid")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != mid.ID || got.Name != "mid" || got.Prefix != "sk-h-mid" || got.Hash != "h-mid" ||
		!got.CreatedAt.Equal(base.Add(time.Hour)) || !got.RevokedAt.IsZero() || !got.Active() {
		t.Fatalf("KeyByHash(h-mid) = %+v", got)
	}
	if !reflect.DeepEqual(got.Models, []string{"gpt-4o", "demo"}) {
		t.Fatalf("Models = %q, want [gpt-4o demo]", got.Models)
	}
	if !got.Allows("demo") || got.Allows("gpt-3.5") {
		t.Fatalf("Allows wrong for models %v", got.Models)
	}
	got, err = s.KeyByHash(ctx, "h-old")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Models) != 0 || !got.Allows("anything") {
		t.Fatalf("key without models: Models = %q, Allows(anything) = %v", got.Models, got.Allows("anything"))
	}
	if _, err := s.KeyByHash(ctx, "no-such-hash"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("KeyByHash(missing) err = %v, want ErrNotFound", err)
	}

	// Revoke by name.
	revStart := time.Now().Truncate(time.Second)
	if err := s.RevokeKey(ctx, "mid"); err != nil {
		t.Fatalf("RevokeKey(mid): %v", err)
	}
	got, err = s.KeyByHash(ctx, "h-mid") // revoked keys are still found, as revoked
	if err != nil {
		t.Fatal(err)
	}
	if got.Active() || got.RevokedAt.Before(revStart) || got.RevokedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("after revoke: Active=%v RevokedAt=%v", got.Active(), got.RevokedAt)
	}
	if err := s.RevokeKey(ctx, "mid"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second RevokeKey(mid) err = %v, want ErrNotFound", err)
	}

	// Revoke by numeric id.
	if err := s.RevokeKey(ctx, strconv.FormatInt(newest.ID, 10)); err != nil {
		t.Fatalf("RevokeKey(id %d): %v", newest.ID, err)
	}
	if err := s.RevokeKey(ctx, strconv.FormatInt(newest.ID, 10)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second RevokeKey(id) err = %v, want ErrNotFound", err)
	}
	if err := s.RevokeKey(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeKey(nobody) err = %v, want ErrNotFound", err)
	}

	// Only the revoked keys changed.
	list, err = s.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]bool{}
	for _, k := range list {
		active[k.Name] = k.Active()
	}
	want := map[string]bool{"now": true, "twin": true, "new": false, "mid": false, "old": true}
	if !reflect.DeepEqual(active, want) {
		t.Fatalf("active after revokes = %v, want %v", active, want)
	}
	_ = old
	_ = twin
}

func TestRevokeKeyByNameRevokesAllActiveWithThatName(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	for _, h := range []string{"a", "b"} {
		if _, err := s.CreateKey(ctx, store.Key{Name: "shared", Prefix: h, Hash: h}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeKey(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b"} {
		k, err := s.KeyByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if k.Active() {
			t.Fatalf("key %s still active", h)
		}
	}
}

// --- logs ---

func TestLogDrainedOnClose(t *testing.T) {
	const n = 10000
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	within(t, testTimeout, "logging", func() {
		for i := 0; i < n; i++ {
			s.Log(logRow(fmt.Sprintf("req-%05d", i)))
		}
	})
	closeStore(t, s)
	st := s.Stats()
	if st.Written != n || st.Failed != 0 || st.Queued != 0 {
		t.Fatalf("stats after Close = %+v, want Written=%d Failed=0 Queued=0", st, n)
	}
	// 512 rows per batch at most, so at least ceil(n/512) batches; batching means far fewer than rows.
	if st.Batches < (n+511)/512 || st.Batches > n/20 {
		t.Fatalf("Batches = %d for %d rows, want between %d and %d", st.Batches, n, (n+511)/512, n/20)
	}
	t.Logf("%d rows in %d batches (blocked %d, last flush %v)", n, st.Batches, st.Blocked, st.LastFlush)

	if got := countLogs(t, path); got != n {
		t.Fatalf("CountLogs after reopen = %d, want %d", got, n)
	}
	s2 := openStore(t, path, sqlite.Options{})
	var distinct int
	if err := s2.DB().QueryRowContext(ctxT(t), `SELECT count(DISTINCT request_id) FROM request_logs`).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != n {
		t.Fatalf("distinct request ids = %d, want %d", distinct, n)
	}
}

func TestRecentLogsRoundTrip(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{FlushInterval: 5 * time.Millisecond})
	base := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	rows := []store.LogRow{
		{Time: base, RequestID: "r1", KeyID: 7, Surface: "openai", Model: "gpt-4o", UpstreamModel: "gpt-4o-2024-08-06",
			Channel: "openai", Stream: true, Status: 200, Latency: 1234567891 * time.Nanosecond, TTFB: 98765432 * time.Nanosecond,
			Usage: store.Usage{PromptTokens: 11, CompletionTokens: 22, TotalTokens: 33, Estimated: true}},
		{Time: base.Add(1500 * time.Microsecond), RequestID: "r2", KeyID: 1 << 40, Surface: "fastgpt", Model: "demo", UpstreamModel: "demo",
			Channel: "demo", Stream: false, Status: 502, Latency: 999 * time.Nanosecond, TTFB: 0,
			Usage: store.Usage{}, Error: "upstream: 连接失败 \"quoted\"\nline2"},
		// Same millisecond as r2: the later insert is the newer row.
		{Time: base.Add(1700 * time.Microsecond), RequestID: "r3", KeyID: 0, Surface: "openai", Model: "m", UpstreamModel: "m",
			Channel: "c", Stream: true, Status: 429, Latency: time.Minute, TTFB: time.Second,
			Usage: store.Usage{PromptTokens: 1, TotalTokens: 1, Estimated: false}, Error: "rate limited"},
	}
	for _, r := range rows {
		s.Log(r)
	}
	closeStore(t, s)

	s2 := openStore(t, path, sqlite.Options{})
	got, err := s2.RecentLogs(ctxT(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("RecentLogs returned %d rows, want %d", len(got), len(rows))
	}
	for i, g := range got {
		w := rows[len(rows)-1-i] // newest first
		w.Time = w.Time.Truncate(time.Millisecond)
		w.Latency = w.Latency.Truncate(time.Microsecond)
		w.TTFB = w.TTFB.Truncate(time.Microsecond)
		if !g.Time.Equal(w.Time) {
			t.Errorf("row %d (%s): Time = %v, want %v", i, w.RequestID, g.Time.UTC(), w.Time)
		}
		g.Time, w.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
		}
	}

	got, err = s2.RecentLogs(ctxT(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].RequestID != "r3" || got[1].RequestID != "r2" {
		t.Fatalf("RecentLogs(2) = %+v, want r3, r2", got)
	}
}

func TestRecentLogsDefaultLimit(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	base := time.Now()
	for i := 0; i < 150; i++ {
		r := logRow(fmt.Sprintf("req-%03d", i))
		r.Time = base.Add(time.Duration(i) * time.Millisecond)
		s.Log(r)
	}
	closeStore(t, s)
	s2 := openStore(t, path, sqlite.Options{})
	got, err := s2.RecentLogs(ctxT(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].RequestID != "req-149" || got[99].RequestID != "req-050" {
		t.Fatalf("RecentLogs(0): %d rows, first %q; want 100 rows from req-149 down to req-050", len(got), got[0].RequestID)
	}
}

func TestConcurrentLog(t *testing.T) {
	const workers, per = 16, 1000
	path := dbPath(t)
	// A small queue so that producers outrun the writer and hit back-pressure.
	s := openStore(t, path, sqlite.Options{QueueSize: 64, BatchSize: 128})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				s.Log(logRow(fmt.Sprintf("w%02d-%04d", w, i)))
			}
		}(w)
	}
	within(t, testTimeout, "16 loggers", wg.Wait)
	closeStore(t, s)
	st := s.Stats()
	if st.Written != workers*per || st.Failed != 0 {
		t.Fatalf("stats = %+v, want Written=%d Failed=0", st, workers*per)
	}
	t.Logf("stats: %+v", st)
	if got := countLogs(t, path); got != workers*per {
		t.Fatalf("CountLogs = %d, want %d", got, workers*per)
	}
}

// Close racing with producers: every row is either committed or counted as failed, never lost silently,
// and Close neither panics nor deadlocks.
func TestLogRacingClose(t *testing.T) {
	const workers, per = 16, 2000
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{QueueSize: 256})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				s.Log(logRow(fmt.Sprintf("w%02d-%04d", w, i)))
			}
		}(w)
	}
	time.Sleep(20 * time.Millisecond)
	closeStore(t, s)
	within(t, testTimeout, "loggers after Close", wg.Wait)
	st := s.Stats()
	if st.Written+st.Failed != workers*per {
		t.Fatalf("Written %d + Failed %d = %d, want %d", st.Written, st.Failed, st.Written+st.Failed, workers*per)
	}
	if got := countLogs(t, path); int64(got) != st.Written {
		t.Fatalf("CountLogs = %d, Stats.Written = %d", got, st.Written)
	}
	t.Logf("written %d, dropped after close %d", st.Written, st.Failed)
}

func TestLogAfterClose(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	s.Log(logRow("before"))
	closeStore(t, s)
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Log after Close panicked: %v", r)
			}
		}()
		s.Log(logRow("after"))
	}()
	st := s.Stats()
	if st.Failed != 1 || st.Written != 1 {
		t.Fatalf("stats = %+v, want Written=1 Failed=1", st)
	}
	// Closing again is harmless.
	within(t, testTimeout, "second Close", func() { _ = s.Close() })
	if got := countLogs(t, path); got != 1 {
		t.Fatalf("CountLogs = %d, want 1", got)
	}
}

// Two handles on one file (as two processes would have): both writers commit, busy_timeout and
// BEGIN IMMEDIATE serialise them instead of failing with SQLITE_BUSY.
func TestTwoStoresSameFile(t *testing.T) {
	const workers, per = 4, 2500
	path := dbPath(t)
	a := openStore(t, path, sqlite.Options{BatchSize: 64, FlushInterval: time.Millisecond})
	b := openStore(t, path, sqlite.Options{BatchSize: 64, FlushInterval: time.Millisecond})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for _, st := range []struct {
		name string
		s    *sqlite.Store
	}{{"A", a}, {"B", b}} {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(name string, s *sqlite.Store, w int) {
				defer wg.Done()
				for i := 0; i < per; i++ {
					s.Log(logRow(fmt.Sprintf("%s-%d-%04d", name, w, i)))
				}
			}(st.name, st.s, w)
		}
	}
	within(t, testTimeout, "writers", wg.Wait)
	closeStore(t, a)
	closeStore(t, b)
	for name, s := range map[string]*sqlite.Store{"A": a, "B": b} {
		if st := s.Stats(); st.Written != workers*per || st.Failed != 0 {
			t.Fatalf("store %s stats = %+v, want Written=%d Failed=0", name, st, workers*per)
		}
	}

	s := openStore(t, path, sqlite.Options{})
	for _, name := range []string{"A", "B"} {
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM request_logs WHERE request_id LIKE ?`, name+"-%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != workers*per {
			t.Fatalf("rows from %s = %d, want %d", name, n, workers*per)
		}
	}
}

// Key commands from a second handle (the CLI beside a running relay) succeed while the first handle's
// writer is committing request logs at a steady rate.
func TestKeyWritesBesideAnotherWriter(t *testing.T) {
	path := dbPath(t)
	server := openStore(t, path, sqlite.Options{FlushInterval: 5 * time.Millisecond})
	cli := openStore(t, path, sqlite.Options{})
	ctx := ctxT(t)
	stop := make(chan struct{})
	logged := make(chan int)
	go func() {
		n := 0
		defer func() { logged <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// About 2,000 rows/s: well below the writer's capacity even under -race. (A saturated writer
			// commits back to back and can starve another handle past busy_timeout: SQLite locks are not fair.)
			for j := 0; j < 2; j++ {
				server.Log(logRow(fmt.Sprintf("srv-%d", n)))
				n++
			}
			time.Sleep(time.Millisecond)
		}
	}()
	const keys = 20
	for i := 0; i < keys; i++ {
		h := fmt.Sprintf("cli-%d", i)
		if _, err := cli.CreateKey(ctx, store.Key{Name: h, Prefix: h, Hash: h}); err != nil {
			close(stop)
			t.Fatalf("CreateKey %d beside a busy writer: %v", i, err)
		}
		if i%2 == 0 {
			if err := cli.RevokeKey(ctx, h); err != nil {
				close(stop)
				t.Fatalf("RevokeKey %s beside a busy writer: %v", h, err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	var n int
	within(t, testTimeout, "server logger", func() { n = <-logged })
	closeStore(t, server)
	if st := server.Stats(); st.Written != int64(n) || st.Failed != 0 {
		t.Fatalf("server stats = %+v, want Written=%d Failed=0", st, n)
	}
	list, err := cli.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, k := range list {
		if k.Active() {
			active++
		}
	}
	if len(list) != keys || active != keys/2 {
		t.Fatalf("keys = %d (%d active), want %d (%d active)", len(list), active, keys, keys/2)
	}
	if c, err := cli.CountLogs(ctx); err != nil || c != n {
		t.Fatalf("CountLogs = %d, %v; want %d", c, err, n)
	}
}

// Options.FlushInterval is "how long a partial batch may wait": rows arriving as a steady trickle must
// still be committed within about that time, not only when a full batch has gathered.
func TestTrickleCommitsWithinFlushInterval(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{FlushInterval: 100 * time.Millisecond, BatchSize: 512})
	// One row every 20ms for 1s: 50 rows, far from a full batch, each arriving before the interval ends.
	deadline := time.Now().Add(time.Second)
	n := 0
	for time.Now().Before(deadline) {
		s.Log(logRow(fmt.Sprintf("t-%d", n)))
		n++
		time.Sleep(20 * time.Millisecond)
	}
	// Rows logged more than 3 intervals (15 rows) ago must be committed by now.
	st := s.Stats()
	if st.Written < int64(n)-15 {
		t.Fatalf("%d rows trickled over 1s (one per 20ms) with FlushInterval 100ms, but only %d committed (%+v)", n, st.Written, st)
	}
}

// The writer keeps its own connection: batches commit while every pooled connection is taken (in the
// relay, by handlers waiting for the write lock the writer holds), and batches of every size reuse the
// statements the first ones prepared.
func TestWriterNeedsNoPooledConnection(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{FlushInterval: time.Millisecond, BatchSize: 512})
	ctx := ctxT(t)
	s.Log(logRow("first"))
	waitWritten(t, s, 1)
	var held []*sql.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(held) < 8 { // every connection the pool has left
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for i := 0; i < 203; i++ { // batches of 128+64+8+2+1 rows and smaller
		s.Log(logRow(fmt.Sprintf("r-%d", i)))
	}
	waitWritten(t, s, 204)
}

// Close commits what is queued at once: the last batch does not wait out its flush interval.
func TestCloseDoesNotWaitForFlushInterval(t *testing.T) {
	for _, n := range []int{1, 10, 600} {
		s := openStore(t, dbPath(t), sqlite.Options{FlushInterval: 10 * time.Second, BatchSize: 512})
		for i := 0; i < n; i++ {
			s.Log(logRow(fmt.Sprintf("c-%d", i)))
		}
		start := time.Now()
		closeStore(t, s)
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("%d rows: Close took %v with a 10s flush interval", n, el)
		}
		if st := s.Stats(); st.Written != int64(n) {
			t.Fatalf("%d rows: written %d", n, st.Written)
		}
	}
}

func waitWritten(t *testing.T, s *sqlite.Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Written < n {
		if time.Now().After(deadline) {
			t.Fatalf("written %d rows, want %d (%+v)", s.Stats().Written, n, s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// --- benchmark ---

// BenchmarkWriter measures committed rows per second: b.N rows are logged, then Close drains and
// commits them all.
func BenchmarkWriter(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := sqlite.Open(path, sqlite.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	row := logRow("bench")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		row.RequestID = "bench-" + strconv.Itoa(i)
		s.Log(row)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	if st.Written != int64(b.N) || st.Failed != 0 {
		b.Fatalf("stats = %+v, want Written=%d", st, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(st.Batches), "batches")
}
