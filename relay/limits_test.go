package relay

import (
	"testing"
	"time"

	"relay/adaptor"
	"relay/store"
)

func TestLimiterBuckets(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	k := &store.Key{ID: 1, RPM: 2, TPM: 100}
	req := &adaptor.Request{Body: make([]byte, 40)} // estimate 11 tokens
	for i := 0; i < 2; i++ {
		a, e := l.admit(k, req)
		if e != nil {
			t.Fatalf("request %d refused: %v", i, e)
		}
		a.done(adaptor.Usage{TotalTokens: 11})
	}
	_, e := l.admit(k, req)
	if e == nil || e.Status != 429 || e.Code != "rate_limit_exceeded" || e.RetryAfter != "30" {
		t.Fatalf("third request in the minute: %+v", e)
	}
	now = now.Add(30 * time.Second)
	a, e := l.admit(k, req)
	if e != nil {
		t.Fatalf("after 30s: %v", e)
	}
	// Real usage far above the estimate puts the TPM bucket in debt: the next request must wait.
	a.done(adaptor.Usage{TotalTokens: 400})
	now = now.Add(30 * time.Second)
	if _, e = l.admit(k, req); e == nil || e.Code != "rate_limit_exceeded" {
		t.Fatalf("TPM debt not enforced: %+v", e)
	}
}

func TestLimiterStreamsAndQuota(t *testing.T) {
	l := newLimiter()
	k := &store.Key{ID: 2, MaxStreams: 1, QuotaTokens: 100, UsedTokens: 60}
	stream := &adaptor.Request{Stream: true, Body: make([]byte, 40)}
	a, e := l.admit(k, stream)
	if e != nil {
		t.Fatal(e)
	}
	if _, e := l.admit(k, stream); e == nil || e.Code != "rate_limit_exceeded" || e.RetryAfter != "1" {
		t.Fatalf("second stream: %+v", e)
	}
	a.done(adaptor.Usage{TotalTokens: 30}) // 60 + 30 used
	if _, e := l.admit(k, stream); e == nil || e.Code != "insufficient_quota" || e.Retryable {
		t.Fatalf("over quota: %+v", e)
	}
	if got := l.state(k).used.Load(); got != 90 {
		t.Fatalf("used %d, want 90", got)
	}
	// A key without limits is not tracked at all.
	if a, e := l.admit(&store.Key{ID: 3}, stream); a != nil || e != nil {
		t.Fatal("unlimited key tracked")
	}
}
