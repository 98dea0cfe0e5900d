package relay

import (
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"relay/adaptor"
)

// Channel is a configured upstream with its adaptor and routing weight.
type Channel struct {
	*adaptor.Channel
	Adaptor  adaptor.Adaptor
	Priority int // higher is tried first
	Weight   int // share inside a priority group
	// IdleTimeout bounds the wait for a stream's first event and every gap between events.
	IdleTimeout time.Duration

	breaker *breaker
	// slots bounds concurrent upstream calls (max_concurrency); nil: unbounded. A stream holds its slot
	// until it ends, so one hot model cannot take every connection a channel has.
	slots chan struct{}
	// keyBadUntil holds, per upstream key, when a key the upstream refused (401/403) or rate-limited
	// (429 on a channel with other keys) may be used again (Unix nanoseconds; 0: good). Keys are
	// otherwise used round-robin.
	keyBadUntil []atomic.Int64
	keyNext     atomic.Uint32
}

// KeyCooldown is how long a key the upstream refused, or whose quota it says is spent, is left out.
// A key it only rate-limited is left out for its Retry-After (KeyRateLimitCooldown without one, at
// most KeyCooldown).
const (
	KeyCooldown          = 10 * time.Minute
	KeyRateLimitCooldown = 30 * time.Second
)

// pickKey returns the index of the next usable key, round-robin; when every key is set aside it takes
// the next one anyway (a refused key beats no request).
func (ch *Channel) pickKey(now time.Time) int {
	n := len(ch.Keys)
	start := int(ch.keyNext.Add(1)-1) % n
	if ch.keyBadUntil == nil {
		return start
	}
	for i := 0; i < n; i++ {
		j := (start + i) % n
		if ch.keyBadUntil[j].Load() <= now.UnixNano() {
			return j
		}
	}
	return start
}

// setKeyAside leaves key i out of the rotation for d.
func (ch *Channel) setKeyAside(i int, now time.Time, d time.Duration) {
	if ch.keyBadUntil != nil && i < len(ch.keyBadUntil) {
		ch.keyBadUntil[i].Store(now.Add(d).UnixNano())
	}
}

// badKeys counts the keys set aside now.
func (ch *Channel) badKeys(now time.Time) int {
	n := 0
	for i := range ch.keyBadUntil {
		if ch.keyBadUntil[i].Load() > now.UnixNano() {
			n++
		}
	}
	return n
}

// acquire takes a concurrency slot without waiting.
func (ch *Channel) acquire() bool {
	if ch.slots == nil {
		return true
	}
	select {
	case ch.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (ch *Channel) releaseSlot() {
	if ch.slots != nil {
		<-ch.slots
	}
}

// Router maps client model names to the channels that serve them.
type Router struct {
	byModel map[string][]*Channel // sorted by priority, highest first
	models  []string              // every served model, sorted
}

// NewRouter indexes channels by the models they serve.
func NewRouter(channels []*Channel) *Router {
	r := &Router{byModel: map[string][]*Channel{}}
	for _, ch := range channels {
		if ch.breaker == nil {
			ch.breaker = newBreaker(0, 0)
		}
		if ch.keyBadUntil == nil && len(ch.Keys) > 0 {
			ch.keyBadUntil = make([]atomic.Int64, len(ch.Keys))
		}
		for _, m := range ch.Models {
			if _, seen := r.byModel[m]; !seen {
				r.models = append(r.models, m)
			}
			r.byModel[m] = append(r.byModel[m], ch)
		}
	}
	for _, list := range r.byModel {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Priority > list[j].Priority })
	}
	sort.Strings(r.models)
	return r
}

// Models lists every model some channel serves.
func (r *Router) Models() []string { return r.models }

// Serves reports whether any channel serves model.
func (r *Router) Serves(model string) bool { return len(r.byModel[model]) > 0 }

// Candidates returns the channels to try for model, in order: priority groups highest first, and inside
// a group a weighted random order. The common one-channel case allocates nothing.
func (r *Router) Candidates(model string) []*Channel {
	list := r.byModel[model]
	if len(list) <= 1 {
		return list
	}
	out := make([]*Channel, 0, len(list))
	for start := 0; start < len(list); {
		end := start + 1
		for end < len(list) && list[end].Priority == list[start].Priority {
			end++
		}
		out = appendWeighted(out, list[start:end])
		start = end
	}
	// Tripped channels go last: tried only when every healthy one failed.
	now := time.Now()
	healthy := out[:0:0]
	var tripped []*Channel
	for _, ch := range out {
		if ch.breaker.healthy(now) {
			healthy = append(healthy, ch)
		} else {
			tripped = append(tripped, ch)
		}
	}
	return append(healthy, tripped...)
}

// Channels lists every channel once, in configuration order of first appearance.
func (r *Router) Channels() []*Channel {
	seen := map[*Channel]bool{}
	var out []*Channel
	for _, m := range r.models {
		for _, ch := range r.byModel[m] {
			if !seen[ch] {
				seen[ch] = true
				out = append(out, ch)
			}
		}
	}
	return out
}

// appendWeighted appends group in weighted random order (each pick proportional to remaining weight).
func appendWeighted(out, group []*Channel) []*Channel {
	rest := append([]*Channel(nil), group...)
	for len(rest) > 0 {
		total := 0
		for _, ch := range rest {
			total += ch.Weight
		}
		n := rand.IntN(total)
		i := 0
		for ; i < len(rest)-1; i++ {
			n -= rest[i].Weight
			if n < 0 {
				break
			}
		}
		out = append(out, rest[i])
		rest = append(rest[:i], rest[i+1:]...)
	}
	return out
}
