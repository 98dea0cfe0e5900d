package relay

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"relay/adaptor"
	"relay/store"
)

// Per-key limits, enforced in memory on the request path (no database read): requests per minute and
// tokens per minute as token buckets (tokens estimated from the body before the call, corrected with
// the real usage after it), concurrent streams, and a token quota whose spending is written through the
// store's async writer. Exceeding one answers 429 with Retry-After; an exhausted quota answers 429
// insufficient_quota with x-should-retry: false so SDKs fail fast instead of retrying.

// bucket is a token bucket refilled continuously at rate per minute, holding at most one minute's worth.
// It may go negative when real usage exceeds the estimate (the debt delays later requests).
type bucket struct {
	level float64
	at    time.Time
}

func (b *bucket) refill(rate int, now time.Time) {
	if b.at.IsZero() {
		b.level, b.at = float64(rate), now
		return
	}
	b.level = math.Min(float64(rate), b.level+now.Sub(b.at).Minutes()*float64(rate))
	b.at = now
}

// wait is how long until n tokens are available.
func (b *bucket) wait(rate int, n float64) time.Duration {
	missing := n - b.level
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(rate) * float64(time.Minute))
}

// keyState is one key's limit accounting.
type keyState struct {
	mu       sync.Mutex
	rpm, tpm bucket
	streams  atomic.Int64
	used     atomic.Int64 // tokens spent or reserved against the quota (seeded from the store)
	seeded   atomic.Bool
	quota    bool // the key has a token quota (set when the state is made; keys' limits do not change)
}

type limiter struct {
	mu   sync.Mutex
	keys map[int64]*keyState
	now  func() time.Time
}

func newLimiter() *limiter { return &limiter{keys: map[int64]*keyState{}, now: time.Now} }

func (l *limiter) state(k *store.Key) *keyState {
	l.mu.Lock()
	st := l.keys[k.ID]
	if st == nil {
		st = &keyState{quota: k.QuotaTokens > 0}
		l.keys[k.ID] = st
	}
	l.mu.Unlock()
	if st.seeded.CompareAndSwap(false, true) {
		st.used.Add(k.UsedTokens) // what earlier runs of the relay spent
	}
	return st
}

// admission is what admit reserved; done settles it with the real usage.
type admission struct {
	st       *keyState
	key      *store.Key
	estimate int
	stream   bool
}

// estimateTokens is the before-the-call guess for TPM and quota: about four bytes per token of the
// body. Cheap on purpose; the real usage corrects it after the answer.
func estimateTokens(body []byte) int { return len(body)/4 + 1 }

// admit checks key's limits for one request and reserves its share, or returns the 429 to answer.
func (l *limiter) admit(k *store.Key, req *adaptor.Request) (*admission, *adaptor.Error) {
	if k.RPM <= 0 && k.TPM <= 0 && k.MaxStreams <= 0 && k.QuotaTokens <= 0 {
		return nil, nil
	}
	st := l.state(k)
	est := estimateTokens(req.Body)
	// The estimate is reserved against the quota at once, so concurrent requests cannot all pass on the
	// same remaining balance.
	if k.QuotaTokens > 0 && st.used.Add(int64(est)) > k.QuotaTokens {
		st.used.Add(-int64(est))
		return nil, &adaptor.Error{Status: 429, Type: "insufficient_quota", Code: "insufficient_quota",
			Message: "This key's token quota is used up (" + strconv.FormatInt(k.QuotaTokens, 10) + " tokens)."}
	}
	unreserve := func() {
		if k.QuotaTokens > 0 {
			st.used.Add(-int64(est))
		}
	}
	now := l.now()
	st.mu.Lock()
	var wait time.Duration
	if k.RPM > 0 {
		st.rpm.refill(k.RPM, now)
		wait = max(wait, st.rpm.wait(k.RPM, 1))
	}
	if k.TPM > 0 {
		st.tpm.refill(k.TPM, now)
		// A request larger than a whole minute's budget still passes on a full bucket.
		wait = max(wait, st.tpm.wait(k.TPM, math.Min(float64(est), float64(k.TPM))))
	}
	if wait > 0 {
		st.mu.Unlock()
		unreserve()
		return nil, rateLimited("Rate limit reached for this key; retry after the time in Retry-After.", wait)
	}
	if k.RPM > 0 {
		st.rpm.level--
	}
	if k.TPM > 0 {
		st.tpm.level -= float64(est)
	}
	st.mu.Unlock()
	if req.Stream && k.MaxStreams > 0 {
		if st.streams.Add(1) > int64(k.MaxStreams) {
			st.streams.Add(-1)
			unreserve()
			return nil, rateLimited("This key already has "+strconv.Itoa(k.MaxStreams)+" streams open.", time.Second)
		}
	}
	return &admission{st: st, key: k, estimate: est, stream: req.Stream}, nil
}

// hold settles an admission at once with its estimate as the usage: a batch job is admitted when it is
// submitted and runs later, when correctJob puts its real usage in the estimate's place.
func (a *admission) hold() {
	if a != nil {
		a.done(adaptor.Usage{TotalTokens: a.estimate})
	}
}

// correctJob replaces a batch job's estimate (held at submission) by its real usage (zero for a failed
// job) in the owner key's limits. known is false when this process has no limit state for the key (it
// has no limits, or the relay restarted since the job was submitted); quota tells whether the key has a
// token quota.
func (l *limiter) correctJob(keyID int64, body []byte, u adaptor.Usage) (known, quota bool) {
	l.mu.Lock()
	st := l.keys[keyID]
	l.mu.Unlock()
	if st == nil {
		return false, false
	}
	diff := u.TotalTokens - estimateTokens(body)
	st.mu.Lock()
	st.tpm.level -= float64(diff)
	st.mu.Unlock()
	st.used.Add(int64(diff))
	return true, st.quota
}

// done settles an admission with the request's real usage (zero when it failed before any answer).
func (a *admission) done(u adaptor.Usage) {
	if a == nil {
		return
	}
	if a.stream && a.key.MaxStreams > 0 {
		a.st.streams.Add(-1)
	}
	if a.key.TPM > 0 {
		a.st.mu.Lock()
		a.st.tpm.level -= float64(u.TotalTokens - a.estimate) // correct the estimate
		a.st.mu.Unlock()
	}
	if a.key.QuotaTokens > 0 {
		a.st.used.Add(int64(u.TotalTokens - a.estimate)) // replace the reserved estimate by the real usage
	}
}

func rateLimited(msg string, wait time.Duration) *adaptor.Error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &adaptor.Error{Status: 429, Type: "requests", Code: "rate_limit_exceeded", Message: msg,
		Retryable: true, RetryAfter: strconv.Itoa(secs)}
}
