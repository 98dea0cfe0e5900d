package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"relay/store"
)

// op is one queued write. Every kind of row the hot path writes is an op, so one writer goroutine and one
// transaction per batch serve them all.
type op interface {
	// stmt is the op's SQL. For an insert it is "INSERT INTO t(cols) VALUES " and tuple is the
	// placeholder tuple "(?,?,...)": consecutive inserts of the same stmt are sent as one multi-row
	// INSERT, which in this driver costs far less per row than one statement each. Other writes return
	// an empty tuple and run one by one.
	stmt() string
	tuple() string
	args() []any
}

// maxRowsPerInsert bounds a multi-row INSERT (SQLite allows 32766 parameters).
const maxRowsPerInsert = 64

// writer owns all asynchronous writes: a bounded queue, one goroutine, one transaction per batch.
type writer struct {
	db    *sql.DB
	log   *slog.Logger
	queue chan op
	batch int
	every time.Duration
	nice  int // the writer thread's nice value (Options.WriterNice), 0 after a failure to set it
	// behind is the queue depth at which a batch begins behind: the writer leaves low priority. calm is
	// how long it must then keep up before it lowers its priority again.
	behind int
	calm   time.Duration
	kick   chan struct{} // wakes the writer before its flush deadline
	done   chan struct{}
	// mu guards closed: enqueues hold it shared, close holds it exclusively, so no op is sent on a
	// closed queue and none sent before close is lost.
	mu      sync.RWMutex
	closed  bool
	closing atomic.Bool // closed, readable by the writer without mu

	written, batches, blocked, failed, raised atomic.Int64
	lastFlush                                 atomic.Int64

	// conn is the writer's own connection and stmts its prepared statements by SQL text (both used by
	// the writer goroutine alone, then by close), so a batch does not parse its SQL again. Multi-row
	// inserts use power-of-two row counts only, so there are few texts.
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func newWriter(db *sql.DB, opt Options) *writer {
	w := &writer{db: db, log: opt.Logger, queue: make(chan op, opt.QueueSize), batch: opt.BatchSize,
		every: opt.FlushInterval, nice: opt.WriterNice, behind: max(opt.QueueSize/8, 1), calm: 500 * opt.FlushInterval,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stmts: map[string]*sql.Stmt{}}
	go w.run(w.nice > 0, make([]op, 0, w.batch))
	return w
}

// enqueue hands ops to the writer, in order and all or none (a close cannot fall between them). It only
// waits when the queue is full (back-pressure, counted).
func (w *writer) enqueue(ops ...op) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.failed.Add(int64(len(ops)))
		w.log.Error("store writer: write after close dropped", "stmt", ops[0].stmt()[:20], "rows", len(ops))
		return
	}
	for _, o := range ops {
		select {
		case w.queue <- o:
		default:
			w.blocked.Add(1)
			w.kickWriter()
			w.queue <- o
		}
	}
	if len(w.queue) >= w.batch {
		w.kickWriter()
	}
}

// kickWriter wakes the writer before its flush deadline (a full batch is queued, or close).
func (w *writer) kickWriter() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run is the writer goroutine. With a nice value set it starts at low priority (locked to a thread of
// its own, see lowerPriority). If rows then queue faster than that thread gets the CPU to write them, it
// hands the rows it holds to a normal-priority successor and exits, taking its thread with it; the
// successor hands back to a new low-priority goroutine once it has kept up for a while. One writer
// goroutine exists at a time: a predecessor touches nothing after it starts its successor.
func (w *writer) run(low bool, buf []op) {
	if low {
		lowered, moved := w.lowerPriority()
		if moved {
			go w.run(true, buf)
			return
		}
		low = lowered
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	keptUp := time.Now() // at normal priority: since when no batch began behind
	for {
		if len(buf) == 0 {
			o, ok := <-w.queue // the first op after an idle spell: the writer's only wait on the queue
			if !ok {
				close(w.done)
				return
			}
			buf = append(buf, o)
			// The rest of the batch gathers in the queue while the writer sleeps until the flush
			// deadline (set now, so no row waits longer than FlushInterval plus the commit before it) or
			// until enqueue reports a full batch: one wake-up per batch, not one per row.
			select {
			case <-w.kick: // left over from the last batch
			default:
			}
			if len(w.queue) < w.batch && !w.closing.Load() { // (the drain above may have taken close's kick)
				timer.Reset(w.every)
				select {
				case <-timer.C:
				case <-w.kick:
					timer.Stop()
				}
			}
		}
		behind := len(w.queue) >= w.behind
		if low && behind {
			w.raised.Add(1)
			go w.run(false, buf)
			return
		}
		// One transaction: what is queued, up to a batch.
		closed := false
		for len(buf) < w.batch && !closed {
			select {
			case o, ok := <-w.queue:
				if !ok {
					closed = true
					break
				}
				buf = append(buf, o)
				continue
			default:
			}
			break
		}
		w.flush(buf)
		buf = buf[:0]
		if closed {
			close(w.done)
			return
		}
		if !low && w.nice > 0 {
			if behind {
				keptUp = time.Now()
			} else if time.Since(keptUp) >= w.calm {
				go w.run(true, buf)
				return
			}
		}
		// Rows that queued during the commit start the next transaction at once, until the queue is empty.
		select {
		case o, ok := <-w.queue:
			if !ok {
				close(w.done)
				return
			}
			buf = append(buf, o)
		default:
		}
	}
}

// lowerThreadPriority's refusals: the process's main thread, and any thread off Linux.
var (
	errMainThread = errors.New("the main thread keeps its priority")
	errNotLinux   = errors.New("a thread's priority is only lowered on Linux")
)

// lowerPriority locks the goroutine to its thread and lowers the thread's priority to w.nice, for good
// (see lowerThreadPriority). Where that fails the writer stays at normal priority and does not try again.
// On the main thread it reports moved: the caller starts its successor and exits still locked, which
// parks the main thread for good (the runtime's rule for it), so the successor runs on another thread.
func (w *writer) lowerPriority() (lowered, moved bool) {
	runtime.LockOSThread()
	switch err := lowerThreadPriority(w.nice); {
	case err == nil:
		return true, false
	case errors.Is(err, errMainThread):
		return false, true
	default:
		runtime.UnlockOSThread()
		level := slog.LevelWarn
		if errors.Is(err, errNotLinux) { // expected there, with the default config
			level = slog.LevelInfo
		}
		w.log.Log(context.Background(), level, "store writer: runs at normal priority", "nice", w.nice, "err", err)
		w.nice = 0
		return false, false
	}
}

func (w *writer) flush(buf []op) {
	if len(buf) == 0 {
		return
	}
	start := time.Now()
	if err := w.commit(buf); err != nil {
		w.failed.Add(int64(len(buf)))
		w.log.Error("store writer: batch failed", "rows", len(buf), "err", err)
		return
	}
	w.written.Add(int64(len(buf)))
	w.batches.Add(1)
	w.lastFlush.Store(int64(time.Since(start)))
}

func (w *writer) commit(buf []op) error {
	ctx := context.Background()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = w.commitOnce(ctx, buf); err == nil {
			return nil
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return err
}

// commitOnce writes buf in one transaction on the writer's own connection. Holding a connection for
// good means a batch never waits for the pool while it holds SQLite's write lock (the pool's other users
// may be waiting for that lock), and its prepared statements stay valid from batch to batch. The
// transaction is spelled out in SQL because database/sql would prepare a Conn's statements again inside
// each Tx.
func (w *writer) commitOnce(ctx context.Context, buf []op) (err error) {
	if w.conn == nil {
		if w.conn, err = w.db.Conn(ctx); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			w.dropConn() // a fresh connection (and fresh statements) for the retry
		}
	}()
	if _, err = w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	var args []any
	for i := 0; i < len(buf); {
		q, tuple := buf[i].stmt(), buf[i].tuple()
		n := 1
		if tuple != "" {
			run := 1
			for i+run < len(buf) && run < maxRowsPerInsert && buf[i+run].stmt() == q {
				run++
			}
			for n*2 <= run { // the largest power of two that fits: few distinct statements to prepare
				n *= 2
			}
		}
		args = args[:0]
		for _, o := range buf[i : i+n] {
			args = append(args, o.args()...)
		}
		var st *sql.Stmt
		if st, err = w.prepared(ctx, multiRow(q, tuple, n)); err == nil {
			_, err = st.ExecContext(ctx, args...)
		}
		if err != nil {
			w.conn.ExecContext(ctx, "ROLLBACK")
			return err
		}
		i += n
	}
	if _, err = w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		w.conn.ExecContext(ctx, "ROLLBACK")
	}
	return err
}

// prepared returns q prepared on the writer's connection.
func (w *writer) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

// dropConn closes the writer's statements and gives its connection back to the pool.
func (w *writer) dropConn() {
	for q, st := range w.stmts {
		st.Close()
		delete(w.stmts, q)
	}
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// multiRow builds "INSERT ... VALUES (?,..),(?,..)" for n rows (the statement itself when not an insert).
func multiRow(q, tuple string, n int) string {
	if tuple == "" {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + n*(len(tuple)+1))
	b.WriteString(q)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	return b.String()
}

// close stops accepting ops, drains the queue and waits for the last commit.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.closing.Store(true)
		close(w.queue)
	}
	w.mu.Unlock()
	w.kickWriter() // the last batch need not wait out its deadline
	<-w.done
	w.dropConn()
}

func (w *writer) stats() store.WriterStats {
	return store.WriterStats{
		Queued: int64(len(w.queue)), Written: w.written.Load(), Batches: w.batches.Load(),
		Blocked: w.blocked.Load(), Failed: w.failed.Load(), Raised: w.raised.Load(), LastFlush: time.Duration(w.lastFlush.Load()),
	}
}

// logOp writes one request log row.
type logOp store.LogRow

const insertLog = `INSERT INTO request_logs(time, request_id, key_id, surface, model, upstream_model, channel, stream, status,
	latency_us, ttfb_us, prompt_tokens, completion_tokens, total_tokens, tokens_estimated, error) VALUES `

func (l logOp) stmt() string  { return insertLog }
func (l logOp) tuple() string { return "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)" }

func (l logOp) args() []any {
	return []any{l.Time.UnixMilli(), l.RequestID, l.KeyID, l.Surface, l.Model, l.UpstreamModel, l.Channel, l.Stream, l.Status,
		l.Latency.Microseconds(), l.TTFB.Microseconds(), l.Usage.PromptTokens, l.Usage.CompletionTokens, l.Usage.TotalTokens,
		l.Usage.Estimated, l.Error}
}

// usageOp adds spent tokens to a key's account.
type usageOp struct {
	keyID  int64
	tokens int64
}

func (u usageOp) stmt() string  { return `UPDATE keys SET used_tokens = used_tokens + ? WHERE id = ?` }
func (u usageOp) tuple() string { return "" }
func (u usageOp) args() []any   { return []any{u.tokens, u.keyID} }
