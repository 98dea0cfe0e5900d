// Package sqlite is the embedded store: modernc.org/sqlite (pure Go, CGO_ENABLED=0), WAL mode, embedded
// migrations, and one batching writer goroutine that owns all hot-path writes.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"relay/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune the store; zero values take defaults.
type Options struct {
	QueueSize     int           // bounded write queue (default 10000)
	BatchSize     int           // rows per transaction at most (default 512)
	FlushInterval time.Duration // how long a partial batch may wait (default 10ms; see defaults)
	BusyTimeout   time.Duration // SQLite busy_timeout (default 5s)
	// WriterNice, 1 to 19, runs the writer on its own OS thread at that nice value (Linux only; 0, the
	// default, leaves it at normal priority). A commit is a burst of CPU, about 5 µs a row, and requests
	// on the same cores wait behind it; at a lower priority the kernel runs them first. When the cores
	// stay busy with other work a low-priority writer may not get the CPU it needs: a batch that begins
	// with the queue an eighth full moves the writer back to normal priority (Stats().Raised counts it)
	// until it has kept up for 500 flush intervals.
	WriterNice int
	Logger     *slog.Logger
}

func (o *Options) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.FlushInterval <= 0 {
		// Short waits make small commits: a commit's CPU (about 5 µs a row) comes in bursts that
		// requests on the same cores wait behind. relaybench at concurrency 1: non-stream p99 added
		// +560–680 µs with 50ms, +440–490 µs with 10ms; 5ms cost CPU without shortening the tail further.
		o.FlushInterval = 10 * time.Millisecond
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Store is the SQLite store.
type Store struct {
	db  *sql.DB
	log *slog.Logger
	w   *writer
}

var _ store.Store = (*Store)(nil)

// DSN builds the driver DSN: pragmas and the write transaction mode are set through the driver's
// _pragma and _txlock parameters so that every pooled connection gets them.
func DSN(path string, busy time.Duration) string {
	q := url.Values{}
	// busy_timeout first, so the journal_mode switch on a fresh file already waits for other openers.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path, applies migrations and starts the writer.
func Open(path string, opt Options) (*Store, error) {
	opt.defaults()
	if opt.WriterNice < 0 || opt.WriterNice > 19 {
		return nil, fmt.Errorf("store: writer nice %d is not within 0..19", opt.WriterNice)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store: create %s: %w", dir, err)
		}
	}
	db, err := sql.Open("sqlite", DSN(path, opt.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(9) // the writer holds one of them for good
	db.SetMaxIdleConns(9)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := migrateRetrying(db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, log: opt.Logger}
	s.logPragmas(path)
	s.w = newWriter(db, opt)
	return s, nil
}

// logPragmas logs the pragmas in effect, so a misconfigured DSN shows at start.
func (s *Store) logPragmas(path string) {
	var mode, sync string
	var busy int
	ctx := context.Background()
	_ = s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	_ = s.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy)
	_ = s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync)
	s.log.Info("store opened", "path", path, "journal_mode", mode, "busy_timeout_ms", busy, "synchronous", sync, "txlock", "immediate")
}

// DB exposes the database for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// migrateRetrying runs Migrate, retrying SQLITE_BUSY: while another process turns a fresh file into
// WAL mode, SQLite can answer busy without waiting on busy_timeout.
func migrateRetrying(db *sql.DB) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = Migrate(context.Background(), db); err == nil || !isBusy(err) {
			return err
		}
		time.Sleep(time.Duration(10+attempt*10) * time.Millisecond)
	}
	return err
}

func isBusy(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked"))
}

// Migrate applies the embedded migrations not yet recorded in schema_migrations. It runs in one write
// transaction (BEGIN IMMEDIATE), so processes opening a fresh database at once apply each migration once:
// the second waits on busy_timeout, then finds them recorded.
func Migrate(ctx context.Context, db *sql.DB) error {
	entries, err := migrations.ReadDir("migrations")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(name, ".sql")
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("store: read migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("store: migration %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`, version, time.Now().Unix()); err != nil {
			return fmt.Errorf("store: migration %s: %w", version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	return nil
}

// Close drains the writer and closes the database.
func (s *Store) Close() error {
	s.w.close()
	return s.db.Close()
}

// CheckWritable writes the readiness row: it fails when the database cannot take a write now.
func (s *Store) CheckWritable(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO readiness(id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at`, time.Now().UnixMilli())
	return err
}

// Stats reports the writer's counters.
func (s *Store) Stats() store.WriterStats { return s.w.stats() }

// --- keys ---

// CreateKey inserts a key (hash, not secret) and returns it with its id.
func (s *Store) CreateKey(ctx context.Context, k store.Key) (store.Key, error) {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO keys(name, prefix, hash, models, admin, rpm, tpm, max_streams, quota_tokens, created_at, user_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.Name, k.Prefix, k.Hash, strings.Join(k.Models, ","), k.Admin, k.RPM, k.TPM, k.MaxStreams, k.QuotaTokens, k.CreatedAt.Unix(), k.UserID)
	if err != nil {
		return k, fmt.Errorf("store: create key: %w", err)
	}
	k.ID, _ = res.LastInsertId()
	return k, nil
}

const keyColumns = `id, name, prefix, hash, models, admin, rpm, tpm, max_streams, quota_tokens, used_tokens, created_at, revoked_at, user_id`

func scanKey(row interface{ Scan(...any) error }) (store.Key, error) {
	var k store.Key
	var models string
	var created, revoked int64
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, &k.Hash, &models, &k.Admin, &k.RPM, &k.TPM, &k.MaxStreams, &k.QuotaTokens, &k.UsedTokens, &created, &revoked, &k.UserID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return k, store.ErrNotFound
		}
		return k, err
	}
	if models != "" {
		k.Models = strings.Split(models, ",")
	}
	k.CreatedAt = time.Unix(created, 0)
	if revoked != 0 {
		k.RevokedAt = time.Unix(revoked, 0)
	}
	return k, nil
}

// ListKeys lists all keys, newest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey revokes the active key(s) with this name; when no active key has the name and it is a
// number, the active key with that id.
func (s *Store) RevokeKey(ctx context.Context, nameOrID string) error {
	now := time.Now().Unix()
	res, err := s.db.ExecContext(ctx, `UPDATE keys SET revoked_at = ? WHERE revoked_at = 0 AND name = ?`, now, nameOrID)
	if err != nil {
		return fmt.Errorf("store: revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	id, err := strconv.ParseInt(nameOrID, 10, 64)
	if err != nil {
		return store.ErrNotFound
	}
	if res, err = s.db.ExecContext(ctx, `UPDATE keys SET revoked_at = ? WHERE revoked_at = 0 AND id = ?`, now, id); err != nil {
		return fmt.Errorf("store: revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// KeyByHash finds a key (active or revoked) by the hash of its secret.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.Key, error) {
	return scanKey(s.db.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE hash = ?`, hash))
}

// KeyByID reads a key by its id.
func (s *Store) KeyByID(ctx context.Context, id int64) (store.Key, error) {
	return scanKey(s.db.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
}

// AddKeyUsage queues tokens spent by a key for its quota account.
func (s *Store) AddKeyUsage(keyID int64, tokens int64) {
	if tokens > 0 {
		s.w.enqueue(usageOp{keyID: keyID, tokens: tokens})
	}
}

// --- logs ---

// Log enqueues a request log row for the writer.
func (s *Store) Log(row store.LogRow) { s.w.enqueue(logOp(row)) }

// RecentLogs returns the newest rows first.
func (s *Store) RecentLogs(ctx context.Context, limit int) ([]store.LogRow, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	rows, err := s.db.QueryContext(ctx, `SELECT time, request_id, key_id, surface, model, upstream_model, channel, stream, status,
		latency_us, ttfb_us, prompt_tokens, completion_tokens, total_tokens, tokens_estimated, error
		FROM request_logs ORDER BY time DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.LogRow
	for rows.Next() {
		var r store.LogRow
		var t, lat, ttfb int64
		if err := rows.Scan(&t, &r.RequestID, &r.KeyID, &r.Surface, &r.Model, &r.UpstreamModel, &r.Channel, &r.Stream, &r.Status,
			&lat, &ttfb, &r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.TotalTokens, &r.Usage.Estimated, &r.Error); err != nil {
			return nil, err
		}
		r.Time = time.UnixMilli(t)
		r.Latency = time.Duration(lat) * time.Microsecond
		r.TTFB = time.Duration(ttfb) * time.Microsecond
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountLogs counts the committed rows.
func (s *Store) CountLogs(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM request_logs`).Scan(&n)
	return n, err
}
