package sqlite_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

var daily = store.AssetDefaults{Quantity: 10, Recoverable: true, RecoveryDays: 1, RecoveryQuantity: 10}

func TestCreditSpendCreatesRecoversAndRefunds(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	now := time.Date(2026, 3, 5, 15, 30, 0, 0, time.UTC)

	a, err := s.Asset(ctx, 7, "default", daily, now)
	if err != nil || a.Quantity != 10 || !a.Recoverable || a.RecoveryDays != 1 || a.RecoveryQuantity != 10 ||
		!a.LastRecovery.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("new asset = %+v %v", a, err)
	}
	a, err = s.Spend(ctx, 7, "default", 4, daily, now)
	if err != nil || a.Quantity != 6 || a.Spent != 4 {
		t.Fatalf("spend = %+v %v", a, err)
	}
	// Too few: nothing is taken.
	a, err = s.Spend(ctx, 7, "default", 7, daily, now)
	if !errors.Is(err, store.ErrInsufficientCredits) || a.Quantity != 6 {
		t.Fatalf("overspend = %+v %v", a, err)
	}
	if err := s.Refund(ctx, 7, "default", 2); err != nil {
		t.Fatal(err)
	}
	if a, _ = s.Asset(ctx, 7, "default", daily, now); a.Quantity != 8 || a.Spent != 2 {
		t.Fatalf("after refund %+v", a)
	}
	// Other users and groups are separate rows.
	if b, _ := s.Asset(ctx, 8, "default", daily, now); b.Quantity != 10 {
		t.Fatalf("user 8 = %+v", b)
	}
	if b, _ := s.Spend(ctx, 7, "pro", 1, store.AssetDefaults{Quantity: 3}, now); b.Quantity != 2 || b.Recoverable {
		t.Fatalf("group pro = %+v", b)
	}
	// Defaults apply at creation only: the stored row keeps its own settings.
	if a, _ = s.Asset(ctx, 7, "default", store.AssetDefaults{Quantity: 99}, now); a.Quantity != 8 || a.RecoveryQuantity != 10 {
		t.Fatalf("defaults reapplied: %+v", a)
	}
	// Not yet a day: no recovery. At midnight UTC: topped up to 10, clock moved to that midnight.
	if a, _ = s.Asset(ctx, 7, "default", daily, time.Date(2026, 3, 5, 23, 59, 59, 0, time.UTC)); a.Quantity != 8 {
		t.Fatalf("early recovery %+v", a)
	}
	a, err = s.Spend(ctx, 7, "default", 1, daily, time.Date(2026, 3, 8, 0, 0, 1, 0, time.UTC))
	if err != nil || a.Quantity != 9 || !a.LastRecovery.Equal(time.Date(2026, 3, 8, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("recovered spend = %+v %v", a, err)
	}
	// The recovery was stored: reading again the same day does not recover twice.
	if a, _ = s.Asset(ctx, 7, "default", daily, time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)); a.Quantity != 9 {
		t.Fatalf("recovered twice %+v", a)
	}
	if err := s.Refund(ctx, 99, "default", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refund of no asset: %v", err)
	}
}

func TestCreditRecoveryNeverLowersAndExpiry(t *testing.T) {
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := store.Asset{Quantity: 30, Recoverable: true, RecoveryDays: 2, RecoveryQuantity: 10, LastRecovery: day}
	if a.Recover(day.Add(47*time.Hour)) || a.Quantity != 30 {
		t.Fatalf("recovered early: %+v", a)
	}
	if !a.Recover(day.Add(5*24*time.Hour)) || a.Quantity != 30 || !a.LastRecovery.Equal(day.Add(4*24*time.Hour)) {
		t.Fatalf("a recovery lowered the quantity or misplaced the clock: %+v", a)
	}
	if got := a.NextRecovery(); !got.Equal(day.Add(6 * 24 * time.Hour)) {
		t.Fatalf("next recovery %v", got)
	}
	b := store.Asset{Quantity: 5, ValidSeconds: 3600, LastRecovery: day}
	if b.Recover(day.Add(59*time.Minute)) || b.Quantity != 5 {
		t.Fatalf("expired early: %+v", b)
	}
	if !b.Recover(day.Add(time.Hour)) || b.Quantity != 0 {
		t.Fatalf("not expired: %+v", b)
	}
	if !(store.Asset{}).NextRecovery().IsZero() {
		t.Fatal("a non-recoverable asset has a next recovery")
	}
}

// 50 concurrent spends against 10 credits: exactly 10 succeed, and the row says 0 left, 10 spent.
func TestCreditConcurrentSpend(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	now := time.Now()
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Spend(ctx, 1, "default", 1, daily, now)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrInsufficientCredits):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 40 {
		t.Fatalf("ok=%d refused=%d", ok.Load(), refused.Load())
	}
	a, err := s.Asset(ctx, 1, "default", daily, now)
	if err != nil || a.Quantity != 0 || a.Spent != 10 {
		t.Fatalf("asset = %+v %v", a, err)
	}
}
