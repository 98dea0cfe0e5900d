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
	ID     int64
	Name   string
	Prefix string // the first characters of the secret, to tell keys apart in listings
	Hash   string
	Models []string // models the key may use; empty means all
	Admin  bool     // may read operational endpoints
	UserID int64    // the user whose sessions the key's conversations are logged to (0: none)
	// Limits (0: none): requests and tokens per minute, concurrent streams, and a token quota of which
	// UsedTokens are spent.
	RPM, TPM, MaxStreams    int
	QuotaTokens, UsedTokens int64
	CreatedAt               time.Time
	RevokedAt               time.Time // zero while the key is active
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
	// KeyByID reads a key by id (revoked keys too); background work checks its owner key with it.
	KeyByID(ctx context.Context, id int64) (Key, error)
	// AddKeyUsage adds spent tokens to a key's quota account through the async writer.
	AddKeyUsage(keyID int64, tokens int64)
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
	// CheckWritable proves the database accepts a write now (readiness probes).
	CheckWritable(ctx context.Context) error
	Keys
	Logs
	Jobs
	Users
	Sessions
	Credits
	TurnCounts
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
	Raised    int64 // times a low-priority writer fell behind and went back to normal priority
	LastFlush time.Duration
}

// JobStatus is where an asynchronous (is_batch) job is in its life.
type JobStatus string

// Job states. pending → running → completed (no callback) or delivering → delivered | callback_failed.
// running goes back to pending when the relay stops mid-run; sending (a delivery in flight, shown to
// callers as delivering) goes back to delivering.
const (
	JobPending        JobStatus = "pending"
	JobRunning        JobStatus = "running"
	JobDelivering     JobStatus = "delivering"
	JobSending        JobStatus = "sending"
	JobCompleted      JobStatus = "completed"
	JobDelivered      JobStatus = "delivered"
	JobCallbackFailed JobStatus = "callback_failed"
)

// Job is an asynchronous request: stored when submitted, run by the relay's worker pool, its result
// kept for the task endpoint and, when it has a callback, POSTed there until delivered or given up.
type Job struct {
	ID        string
	Owner     int64 // id of the relay key that submitted it
	RequestID string
	Surface   string
	WorkID    string
	ChatID    string
	Request   []byte // the client's request body
	Callback  string // URL, "" for none
	Status    JobStatus
	// ResultStatus and Result are the HTTP status and body a synchronous call would have answered.
	ResultStatus int
	Result       []byte
	Runs         int // upstream runs started (more than one after a restart mid-run)
	Attempts     int // callback deliveries attempted
	NextAttempt  time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	CompletedAt  time.Time // result stored
	DeliveredAt  time.Time
}

// JobAttempt is one callback delivery.
type JobAttempt struct {
	Attempt  int
	At       time.Time
	Status   int // the receiver's HTTP status, 0 when none (network error)
	Error    string
	Duration time.Duration
}

// Jobs keeps asynchronous jobs. Writes are synchronous (the job state machine is not on the hot path).
// Only GetJob answers callers, and it checks the owner in the query.
type Jobs interface {
	CreateJob(ctx context.Context, j Job) error
	// GetJob returns the owner's job and its delivery attempts; ErrNotFound for any other owner.
	GetJob(ctx context.Context, id string, owner int64) (Job, []JobAttempt, error)
	// ResetJobs makes jobs interrupted by a stop runnable again (running → pending, sending →
	// delivering) and reports how many it moved. Call it once at start, before claiming.
	ResetJobs(ctx context.Context) (int, error)
	// ClaimPendingJobs moves up to n pending jobs, oldest first, to running and returns them.
	ClaimPendingJobs(ctx context.Context, n int) ([]Job, error)
	// ClaimDueDeliveries moves up to n delivering jobs due at now to sending and returns them.
	ClaimDueDeliveries(ctx context.Context, now time.Time, n int) ([]Job, error)
	// NextDelivery reports when the earliest delivering job is due (ok false when none is waiting).
	NextDelivery(ctx context.Context) (at time.Time, ok bool, err error)
	// FinishJob stores a running job's result: it becomes delivering (due at once) when it has a
	// callback, else completed. It returns the new status.
	FinishJob(ctx context.Context, id string, resultStatus int, result []byte, now time.Time) (JobStatus, error)
	// ReleaseJob puts a running job back to pending (its run was interrupted).
	ReleaseJob(ctx context.Context, id string) error
	// ReleaseDelivery puts a sending job back to delivering, due at once, without counting an attempt.
	ReleaseDelivery(ctx context.Context, id string) error
	// RecordAttempt stores a delivery attempt of a sending job and moves it to next: delivered,
	// callback_failed, or delivering again, due at nextAt.
	RecordAttempt(ctx context.Context, id string, a JobAttempt, next JobStatus, nextAt time.Time) error
}
