package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"relay/adaptor"
	"relay/store"
)

// nopStore drops log rows, so the Finish benchmarks measure accounting alone.
type nopStore struct{ store.Store }

func (nopStore) Log(store.LogRow)         {}
func (nopStore) Stats() store.WriterStats { return store.WriterStats{} }

func metricsCore(withMetrics bool) *Core {
	ch := &Channel{Channel: &adaptor.Channel{Name: "ch1", Models: []string{"gpt-4o-mini"}}, Weight: 1}
	co := &Core{store: nopStore{}}
	co.router.Store(NewRouter([]*Channel{ch}))
	if withMetrics {
		co.metrics = newMetrics(co.router.Load(), []*Channel{ch}, co.store)
	}
	return co
}

func benchCall() *Call {
	call := NewCall("req-1", 1, "openai", &adaptor.Request{Model: "gpt-4o-mini", Stream: true})
	call.Channel, call.Status, call.TTFB = "ch1", 200, 150*time.Millisecond
	call.Usage = adaptor.Usage{PromptTokens: 41, CompletionTokens: 20, TotalTokens: 61}
	return call
}

// BenchmarkFinish is Core.Finish for a streamed request on a warm label set, without and with metrics;
// the difference is what metrics add per request.
func BenchmarkFinish(b *testing.B) {
	for _, tc := range []struct {
		name string
		on   bool
	}{{"none", false}, {"metrics", true}} {
		b.Run(tc.name, func(b *testing.B) {
			co, call := metricsCore(tc.on), benchCall()
			co.Finish(call) // warm the label set
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				co.Finish(call)
			}
		})
	}
}

// BenchmarkMetricsFinishParallel is the metrics hook alone from every core at once (shared series).
func BenchmarkMetricsFinishParallel(b *testing.B) {
	co := metricsCore(true)
	co.metrics.finish(benchCall(), 200, time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		call := benchCall()
		for pb.Next() {
			co.metrics.finish(call, 200, time.Second)
		}
	})
}

// The hook allocates nothing on a warm label set; a Core without metrics does not panic.
func TestMetricsFinishAllocs(t *testing.T) {
	co, call := metricsCore(true), benchCall()
	co.Finish(call)
	co.metrics.attemptFailed("ch1", 503)
	if n := testing.AllocsPerRun(100, func() {
		co.metrics.finish(call, 200, time.Second)
		co.metrics.attemptFailed("ch1", 503)
	}); n > 0 {
		t.Errorf("warm finish + failed attempt allocate %v times", n)
	}
	metricsCore(false).Finish(benchCall())
	var m *metrics
	m.attemptFailed("ch1", 500)
}

// A model no channel serves by name (the workflow surface forwards the client's) is labelled "other",
// so clients cannot grow the label set.
func TestMetricsOtherModel(t *testing.T) {
	co := metricsCore(true)
	for _, model := range []string{"anything", "else", "gpt-4o-mini"} {
		call := benchCall()
		call.Surface, call.Req.Model, call.TTFB, call.Usage = "workflow", model, 0, adaptor.Usage{}
		co.Finish(call)
	}
	if n := testutil.CollectAndCount(co.metrics.requests); n != 2 {
		t.Fatalf("%d request series, want 2 (other, gpt-4o-mini)", n)
	}
	if v := testutil.ToFloat64(co.metrics.requests.WithLabelValues("workflow", otherModel, "ch1", "200")); v != 2 {
		t.Fatalf("other = %v, want 2", v)
	}
	if n := testutil.CollectAndCount(co.metrics.ttfb); n != 0 {
		t.Fatalf("ttfb series for non-streams: %d", n)
	}
	if err := testutil.GatherAndCompare(co.metrics.reg, strings.NewReader(`
# HELP relay_channel_breaker_state Circuit breaker state per channel: 0 closed, 1 half-open, 2 open.
# TYPE relay_channel_breaker_state gauge
relay_channel_breaker_state{channel="ch1"} 0
`), "relay_channel_breaker_state"); err != nil {
		t.Fatal(err)
	}
}
