package store

import (
	"context"
	"errors"
	"time"
)

// Credits: the strategy surface's per-user ai_credit asset (seed BytePower doc). A user has one asset per
// credit group (config credit_groups; strategies name theirs). The row is created from the group's
// defaults on first use. Recovery is lazy: every read or spend first applies the recoveries due since
// last_recovery_time, inside the same transaction as the spend, so no cron job is needed and concurrent
// requests never spend the same credit twice.

// AssetName is the name of the chat credit asset in answers.
const AssetName = "ai_credit"

// ErrInsufficientCredits is returned by Spend when the asset holds fewer credits than asked (nothing is
// taken).
var ErrInsufficientCredits = errors.New("insufficient credits")

// AssetDefaults are a credit group's settings for a user's asset when it is first created.
type AssetDefaults struct {
	Quantity         int64 // credits granted at creation
	Recoverable      bool
	RecoveryDays     int   // recovery_period, in days; 0 never recovers
	RecoveryQuantity int64 // a recovery tops the quantity up to this (never lowers it)
	ValidSeconds     int64 // credits expire this long after last_recovery_time; 0 never
}

// Asset is one user's credit asset.
type Asset struct {
	UserID           int64
	Group            string
	Quantity         int64
	Recoverable      bool
	RecoveryDays     int
	RecoveryQuantity int64
	ValidSeconds     int64
	LastRecovery     time.Time // start of the current recovery period (UTC midnight for day periods)
	Spent            int64     // credits spent and not refunded, ever
}

// NewAsset is a user's asset as the defaults create it at now: the recovery clock starts at the
// beginning of the current UTC day, so day periods recover at midnight UTC.
func NewAsset(userID int64, group string, d AssetDefaults, now time.Time) Asset {
	return Asset{UserID: userID, Group: group, Quantity: d.Quantity, Recoverable: d.Recoverable, RecoveryDays: d.RecoveryDays,
		RecoveryQuantity: d.RecoveryQuantity, ValidSeconds: d.ValidSeconds, LastRecovery: now.UTC().Truncate(24 * time.Hour)}
}

// Recover applies, at now, the recoveries due and the expiry of credits past valid_seconds. It reports
// whether the asset changed. Whole periods elapsed since LastRecovery count once: a recovery tops the
// quantity up to RecoveryQuantity and moves LastRecovery on by the elapsed periods.
func (a *Asset) Recover(now time.Time) bool {
	changed := false
	if a.Recoverable && a.RecoveryDays > 0 {
		period := time.Duration(a.RecoveryDays) * 24 * time.Hour
		if el := now.Sub(a.LastRecovery); el >= period {
			a.LastRecovery = a.LastRecovery.Add(el / period * period)
			if a.Quantity < a.RecoveryQuantity {
				a.Quantity = a.RecoveryQuantity
			}
			changed = true
		}
	}
	if a.ValidSeconds > 0 && a.Quantity > 0 && !now.Before(a.LastRecovery.Add(time.Duration(a.ValidSeconds)*time.Second)) {
		a.Quantity = 0
		changed = true
	}
	return changed
}

// NextRecovery is when the asset next recovers (zero when it never does).
func (a Asset) NextRecovery() time.Time {
	if !a.Recoverable || a.RecoveryDays <= 0 {
		return time.Time{}
	}
	return a.LastRecovery.Add(time.Duration(a.RecoveryDays) * 24 * time.Hour)
}

// Credits keeps the users' credit assets. Every call is synchronous (a credit check must be decided
// before the upstream is called) and atomic.
type Credits interface {
	// Asset returns the user's asset in group at now, creating it from d and applying recovery.
	Asset(ctx context.Context, userID int64, group string, d AssetDefaults, now time.Time) (Asset, error)
	// Spend takes n credits at now, after recovery, in one transaction. With fewer than n it takes
	// nothing and returns ErrInsufficientCredits with the asset as it is.
	Spend(ctx context.Context, userID int64, group string, n int64, d AssetDefaults, now time.Time) (Asset, error)
	// Refund gives back n credits taken by Spend (a failed upstream call).
	Refund(ctx context.Context, userID int64, group string, n int64) error
}

// TurnCounts counts a user's recorded turns: the records of their sessions in a module (strategy chats
// record one per successful answer). The count is filtered by the user in the query.
type TurnCounts interface {
	UserTurns(ctx context.Context, userID int64, module int) (int64, error)
}
