package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"relay/store"
)

// Jobs: asynchronous (is_batch) requests. Every state change is one synchronous statement (or one
// transaction), guarded by the state it moves from, so a row is never moved twice. These writes are not
// on the hot path and do not go through the batching writer: a job's state must be on disk before the
// relay answers 202 or acts on it.

const jobColumns = `id, owner, request_id, surface, work_id, chat_id, request, callback, status, result_status, result,
	runs, attempts, next_attempt_at, created_at, updated_at, completed_at, delivered_at`

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func scanJob(row interface{ Scan(...any) error }) (store.Job, error) {
	var j store.Job
	var status string
	var next, created, updated, completed, delivered int64
	err := row.Scan(&j.ID, &j.Owner, &j.RequestID, &j.Surface, &j.WorkID, &j.ChatID, &j.Request, &j.Callback, &status,
		&j.ResultStatus, &j.Result, &j.Runs, &j.Attempts, &next, &created, &updated, &completed, &delivered)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return j, store.ErrNotFound
		}
		return j, err
	}
	j.Status = store.JobStatus(status)
	j.NextAttempt, j.CreatedAt, j.UpdatedAt = fromMS(next), fromMS(created), fromMS(updated)
	j.CompletedAt, j.DeliveredAt = fromMS(completed), fromMS(delivered)
	return j, nil
}

func (s *Store) queryJobs(ctx context.Context, q string, args ...any) ([]store.Job, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// CreateJob stores a new job (pending unless j.Status says otherwise).
func (s *Store) CreateJob(ctx context.Context, j store.Job) error {
	if j.CreatedAt.IsZero() {
		j.CreatedAt = time.Now()
	}
	if j.Status == "" {
		j.Status = store.JobPending
	}
	if j.Request == nil {
		j.Request = []byte{}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO jobs(id, owner, request_id, surface, work_id, chat_id, request, callback, status,
		created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.Owner, j.RequestID, j.Surface, j.WorkID, j.ChatID, j.Request, j.Callback, string(j.Status),
		ms(j.CreatedAt), ms(j.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create job: %w", err)
	}
	return nil
}

// GetJob returns the job if owner submitted it, with its delivery attempts oldest first. The owner is
// part of both queries: another key's job id gives ErrNotFound.
func (s *Store) GetJob(ctx context.Context, id string, owner int64) (store.Job, []store.JobAttempt, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ? AND owner = ?`, id, owner))
	if err != nil {
		return j, nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT a.attempt, a.at, a.status, a.error, a.duration_us FROM job_attempts a
		JOIN jobs j ON j.id = a.job_id WHERE a.job_id = ? AND j.owner = ? ORDER BY a.attempt, a.id`, id, owner)
	if err != nil {
		return j, nil, err
	}
	defer rows.Close()
	var out []store.JobAttempt
	for rows.Next() {
		var a store.JobAttempt
		var at, dur int64
		if err := rows.Scan(&a.Attempt, &at, &a.Status, &a.Error, &dur); err != nil {
			return j, nil, err
		}
		a.At, a.Duration = fromMS(at), time.Duration(dur)*time.Microsecond
		out = append(out, a)
	}
	return j, out, rows.Err()
}

// ResetJobs moves jobs a stopped relay left in flight back to their runnable states.
func (s *Store) ResetJobs(ctx context.Context) (int, error) {
	now := time.Now().UnixMilli()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	r1, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'pending', updated_at = ? WHERE status = 'running'`, now)
	if err != nil {
		return 0, fmt.Errorf("store: reset jobs: %w", err)
	}
	r2, err := tx.ExecContext(ctx, `UPDATE jobs SET status = 'delivering', next_attempt_at = ?, updated_at = ? WHERE status = 'sending'`, now, now)
	if err != nil {
		return 0, fmt.Errorf("store: reset jobs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: reset jobs: %w", err)
	}
	n1, _ := r1.RowsAffected()
	n2, _ := r2.RowsAffected()
	return int(n1 + n2), nil
}

// ClaimPendingJobs moves up to n pending jobs to running, oldest first.
func (s *Store) ClaimPendingJobs(ctx context.Context, n int) ([]store.Job, error) {
	if n <= 0 {
		return nil, nil
	}
	jobs, err := s.queryJobs(ctx, `UPDATE jobs SET status = 'running', runs = runs + 1, updated_at = ?
		WHERE seq IN (SELECT seq FROM jobs WHERE status = 'pending' ORDER BY seq LIMIT ?) AND status = 'pending'
		RETURNING `+jobColumns, time.Now().UnixMilli(), n)
	if err != nil {
		return nil, fmt.Errorf("store: claim jobs: %w", err)
	}
	return jobs, nil
}

// ClaimDueDeliveries moves up to n delivering jobs due at now to sending, earliest due first.
func (s *Store) ClaimDueDeliveries(ctx context.Context, now time.Time, n int) ([]store.Job, error) {
	if n <= 0 {
		return nil, nil
	}
	t := now.UnixMilli()
	jobs, err := s.queryJobs(ctx, `UPDATE jobs SET status = 'sending', updated_at = ?
		WHERE seq IN (SELECT seq FROM jobs WHERE status = 'delivering' AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?)
		AND status = 'delivering' RETURNING `+jobColumns, time.Now().UnixMilli(), t, n)
	if err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	return jobs, nil
}

// NextDelivery reports when the earliest waiting delivery is due.
func (s *Store) NextDelivery(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT min(next_attempt_at) FROM jobs WHERE status = 'delivering'`).Scan(&at)
	if err != nil || !at.Valid {
		return time.Time{}, false, err
	}
	return time.UnixMilli(at.Int64), true, nil
}

// FinishJob stores the result of a running job.
func (s *Store) FinishJob(ctx context.Context, id string, resultStatus int, result []byte, now time.Time) (store.JobStatus, error) {
	t := now.UnixMilli()
	var status string
	err := s.db.QueryRowContext(ctx, `UPDATE jobs SET
			status = CASE WHEN callback <> '' THEN 'delivering' ELSE 'completed' END,
			result_status = ?, result = ?, completed_at = ?, next_attempt_at = ?, updated_at = ?
		WHERE id = ? AND status = 'running' RETURNING status`, resultStatus, result, t, t, t, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: finish job: %w", err)
	}
	return store.JobStatus(status), nil
}

// ReleaseJob puts a running job back to pending.
func (s *Store) ReleaseJob(ctx context.Context, id string) error {
	return s.move(ctx, `UPDATE jobs SET status = 'pending', updated_at = ? WHERE id = ? AND status = 'running'`, time.Now().UnixMilli(), id)
}

// ReleaseDelivery puts a sending job back to delivering, due at once.
func (s *Store) ReleaseDelivery(ctx context.Context, id string) error {
	now := time.Now().UnixMilli()
	return s.move(ctx, `UPDATE jobs SET status = 'delivering', next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'sending'`, now, now, id)
}

func (s *Store) move(ctx context.Context, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("store: job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RecordAttempt stores a delivery attempt and the job's next state in one transaction.
func (s *Store) RecordAttempt(ctx context.Context, id string, a store.JobAttempt, next store.JobStatus, nextAt time.Time) error {
	switch next {
	case store.JobDelivered, store.JobDelivering, store.JobCallbackFailed:
	default:
		return fmt.Errorf("store: record attempt: bad next status %q", next)
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	now := time.Now().UnixMilli()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var delivered int64
	if next == store.JobDelivered {
		delivered = a.At.UnixMilli()
	}
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET status = ?, attempts = attempts + 1, next_attempt_at = ?, delivered_at = ?, updated_at = ?
		WHERE id = ? AND status = 'sending'`, string(next), ms(nextAt), delivered, now, id)
	if err != nil {
		return fmt.Errorf("store: record attempt: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO job_attempts(job_id, attempt, at, status, error, duration_us) VALUES (?, ?, ?, ?, ?, ?)`,
		id, a.Attempt, a.At.UnixMilli(), a.Status, a.Error, a.Duration.Microseconds()); err != nil {
		return fmt.Errorf("store: record attempt: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: record attempt: %w", err)
	}
	return nil
}

var _ store.Jobs = (*Store)(nil)
