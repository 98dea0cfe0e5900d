package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"relay/store"
)

// Credits (store.Credits): each call is one write transaction. The DSN opens write transactions with
// BEGIN IMMEDIATE, so the read-recover-check-update of a spend holds SQLite's write lock from its first
// statement: concurrent spends of one user are serialized and never take the same credit twice. These
// writes are synchronous on purpose (a credit check decides whether the upstream is called); they do
// not go through the batching writer.

var _ store.Credits = (*Store)(nil)

const assetColumns = `user_id, grp, quantity, recoverable, recovery_days, recovery_quantity, valid_seconds, last_recovery_time, spent`

func scanAsset(row interface{ Scan(...any) error }) (store.Asset, error) {
	var a store.Asset
	var last int64
	err := row.Scan(&a.UserID, &a.Group, &a.Quantity, &a.Recoverable, &a.RecoveryDays, &a.RecoveryQuantity, &a.ValidSeconds, &last, &a.Spent)
	if errors.Is(err, sql.ErrNoRows) {
		return a, store.ErrNotFound
	}
	a.LastRecovery = time.Unix(last, 0).UTC()
	return a, err
}

// withAsset runs fn on the user's asset (created from d, recovered at now) inside one write transaction
// and stores the asset fn leaves when it or the recovery changed it. fn's error is returned after the
// commit, so a refused spend still keeps the recovery it computed.
func (s *Store) withAsset(ctx context.Context, userID int64, group string, d store.AssetDefaults, now time.Time,
	fn func(a *store.Asset) (changed bool, err error)) (store.Asset, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Asset{}, fmt.Errorf("store: credits: %w", err)
	}
	defer tx.Rollback()
	a, err := scanAsset(tx.QueryRowContext(ctx, `SELECT `+assetColumns+` FROM credit_assets WHERE user_id = ? AND grp = ?`, userID, group))
	fresh := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		a, fresh = store.NewAsset(userID, group, d, now), true
	case err != nil:
		return a, fmt.Errorf("store: credits: %w", err)
	}
	changed := a.Recover(now)
	ch, ferr := fn(&a)
	changed = changed || ch
	switch {
	case fresh:
		_, err = tx.ExecContext(ctx, `INSERT INTO credit_assets(`+assetColumns+`, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.UserID, a.Group, a.Quantity, a.Recoverable, a.RecoveryDays, a.RecoveryQuantity, a.ValidSeconds, a.LastRecovery.Unix(), a.Spent,
			now.Unix(), now.Unix())
	case changed:
		_, err = tx.ExecContext(ctx, `UPDATE credit_assets SET quantity = ?, last_recovery_time = ?, spent = ?, updated_at = ?
			WHERE user_id = ? AND grp = ?`, a.Quantity, a.LastRecovery.Unix(), a.Spent, now.Unix(), userID, group)
	default:
		return a, ferr // nothing to write
	}
	if err != nil {
		return a, fmt.Errorf("store: credits: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return a, fmt.Errorf("store: credits: %w", err)
	}
	return a, ferr
}

// Asset returns the user's asset in group, creating it from d and applying recovery at now.
func (s *Store) Asset(ctx context.Context, userID int64, group string, d store.AssetDefaults, now time.Time) (store.Asset, error) {
	return s.withAsset(ctx, userID, group, d, now, func(*store.Asset) (bool, error) { return false, nil })
}

// Spend takes n credits after recovery, or none (ErrInsufficientCredits) when fewer remain.
func (s *Store) Spend(ctx context.Context, userID int64, group string, n int64, d store.AssetDefaults, now time.Time) (store.Asset, error) {
	if n < 0 {
		return store.Asset{}, errors.New("store: credits: negative spend")
	}
	return s.withAsset(ctx, userID, group, d, now, func(a *store.Asset) (bool, error) {
		if a.Quantity < n {
			return false, store.ErrInsufficientCredits
		}
		if n == 0 {
			return false, nil
		}
		a.Quantity -= n
		a.Spent += n
		return true, nil
	})
}

// Refund gives back n credits in one statement.
func (s *Store) Refund(ctx context.Context, userID int64, group string, n int64) error {
	if n <= 0 {
		return nil
	}
	res, err := s.db.ExecContext(ctx, `UPDATE credit_assets SET quantity = quantity + ?, spent = max(spent - ?, 0), updated_at = ?
		WHERE user_id = ? AND grp = ?`, n, n, time.Now().Unix(), userID, group)
	if err != nil {
		return fmt.Errorf("store: credits refund: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return store.ErrNotFound
	}
	return nil
}

// UserTurns sums the records of the user's sessions in module.
func (s *Store) UserTurns(ctx context.Context, userID int64, module int) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(total_records), 0) FROM sessions WHERE user_id = ? AND module = ?`, userID, module).Scan(&n)
	return n, err
}
