// Package store defines what the relay keeps and the interfaces behind which it is kept. store/sqlite is
// the embedded default; a server database can plug in behind the same interfaces.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a looked-up row does not exist (or is not the caller's).
var ErrNotFound = errors.New("not found")

// LogRow is one request through the relay.
type LogRow struct {
	Time          time.Time
	RequestID     string
	KeyID         int64
	Surface       string
	Model         string // as the client asked
	UpstreamModel string // as sent upstream
	Channel       string
	Stream        bool
	Status        int // the HTTP status, or for a stream that failed after it started, the failure's
	Latency       time.Duration
	TTFB          time.Duration // zero for non-stream requests and for failures before the first byte
	Usage         Usage
	Error         string
}

// Usage is token accounting as stored.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	Estimated        bool
}

// Key is a relay API key. Only its SHA-256 hash is stored; the secret is shown once at creation.
type Key struct {
	ID        int64
	Name      string
	Prefix    string // the first characters of the secret, to tell keys apart in listings
	Hash      string
	Models    []string // models the key may use; empty means all
	CreatedAt time.Time
	RevokedAt time.Time // zero while the key is active
}

// Active reports whether the key has not been revoked.
func (k *Key) Active() bool { return k.RevokedAt.IsZero() }

// Allows reports whether the key may use model.
func (k *Key) Allows(model string) bool {
	if len(k.Models) == 0 {
		return true
	}
	for _, m := range k.Models {
		if m == model {
			return true
		}
	}
	return false
}

// Keys manages relay keys. These calls are not on the hot path except KeyByHash, which the relay caches.
type Keys interface {
	CreateKey(ctx context.Context, k Key) (Key, error)
	ListKeys(ctx context.Context) ([]Key, error)
	// RevokeKey revokes the active key with this name (or numeric id).
	RevokeKey(ctx context.Context, nameOrID string) error
	KeyByHash(ctx context.Context, hash string) (Key, error)
}

// Logs reads and writes request log rows. Log enqueues and returns at once; rows reach the database in
// batches through the store's single writer.
type Logs interface {
	Log(row LogRow)
	RecentLogs(ctx context.Context, limit int) ([]LogRow, error)
	CountLogs(ctx context.Context) (int, error)
}

// Store is everything the relay keeps.
type Store interface {
	Keys
	Logs
	// Stats reports the writer's counters.
	Stats() WriterStats
	// Close drains the write queue, commits it, and closes the database.
	Close() error
}

// WriterStats are the async writer's counters.
type WriterStats struct {
	Queued    int64 // rows waiting
	Written   int64 // rows committed
	Batches   int64 // transactions committed
	Blocked   int64 // enqueues that waited because the queue was full
	Failed    int64 // rows lost to a failed transaction (logged)
	LastFlush time.Duration
}
