package relay

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"relay/store"
)

// Prometheus metrics, served at GET /metrics without a relay key: label values are surface, model and
// channel names and HTTP statuses only, never keys, prompts or credentials. Each Server has its own
// registry (not the process-wide default), so several servers in one process do not collide.
//
// The request path pays for one lookup of pre-resolved series per finished request (and one per failed
// upstream attempt): the label set of a (surface, model, channel, status) is resolved once, then kept.
// Channel and store gauges are read at scrape time; nothing runs in the background.

// latencyBuckets suit LLM calls: from a cached or tiny answer to a long generation (seconds).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120}

// otherModel labels models that no channel serves by name (the workflow surface forwards whatever the
// client sent), which keeps the model label's values bounded by the configuration.
const otherModel = "other"

type metrics struct {
	reg    *prometheus.Registry
	chans  *channelCollector
	served atomic.Pointer[map[string]bool] // models the router serves; replaced on reload

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	ttfb     *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	failed   *prometheus.CounterVec

	calls sync.Map // callKey → *callSeries
	fails sync.Map // failKey → prometheus.Counter
}

type callKey struct {
	surface, model, channel string
	status                  int
}

// callSeries are the pre-resolved series of one callKey.
type callSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
	key      callKey
	// Resolved on first use, so non-stream and failed requests add no empty series.
	ttfb   atomic.Pointer[observer]
	tokens [2]atomic.Pointer[tokenSeries] // by estimated
}

type observer struct{ prometheus.Observer }

type tokenSeries struct{ prompt, completion prometheus.Counter }

type failKey struct {
	channel string
	status  int
}

// newMetrics registers the relay's metrics for the router's channels (and any other channel in
// channels, such as one only a workflow uses) and the store's writer.
func newMetrics(router *Router, channels []*Channel, st store.Store) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.setServed(router)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_requests_total",
		Help: "Requests accounted (one per request log row), by surface, model, channel and final HTTP status.",
	}, []string{"surface", "model", "channel", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "relay_request_duration_seconds",
		Help:    "Time from the request's start to its end (a stream's last byte), by surface, model and channel.",
		Buckets: latencyBuckets,
	}, []string{"surface", "model", "channel"})
	m.ttfb = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "relay_time_to_first_byte_seconds",
		Help:    "Time from a stream's start to its first byte to the client (streams only), by surface, model and channel.",
		Buckets: latencyBuckets,
	}, []string{"surface", "model", "channel"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_tokens_total",
		Help: "Tokens accounted, by model, channel, kind (prompt, completion) and whether they were estimated.",
	}, []string{"model", "channel", "kind", "estimated"})
	m.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_upstream_failed_attempts_total",
		Help: "Upstream attempts that failed before the first byte, by channel and status; a retryable one moves on to the next channel.",
	}, []string{"channel", "status"})

	m.chans = newChannelCollector()
	m.setChannels(router, channels)
	m.reg.MustRegister(m.requests, m.latency, m.ttfb, m.tokens, m.failed,
		m.chans, newStoreCollector(st),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setServed records the models the router serves (model label values beyond them become "other").
func (m *metrics) setServed(router *Router) {
	if m == nil {
		return
	}
	served := map[string]bool{}
	for _, model := range router.Models() {
		served[model] = true
	}
	m.served.Store(&served)
}

// setChannels records the channels whose breaker and in-flight gauges are reported.
func (m *metrics) setChannels(router *Router, channels []*Channel) {
	if m == nil {
		return
	}
	seen := map[string]bool{}
	var chans []*Channel
	for _, ch := range append(router.Channels(), channels...) {
		if ch != nil && ch.breaker != nil && !seen[ch.Name] {
			seen[ch.Name] = true
			chans = append(chans, ch)
		}
	}
	m.chans.channels.Store(&chans)
}

// handler serves the registry in the Prometheus text (or negotiated) format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// finish accounts one finished request; status is the one logged. Nil-safe (a Core without metrics).
func (m *metrics) finish(call *Call, status int, latency time.Duration) {
	if m == nil {
		return
	}
	model := call.Req.Model
	if !(*m.served.Load())[model] {
		model = otherModel
	}
	k := callKey{surface: call.Surface, model: model, channel: call.Channel, status: status}
	v, ok := m.calls.Load(k)
	if !ok {
		v = m.resolveCall(k)
	}
	s := v.(*callSeries)
	s.requests.Inc()
	s.latency.Observe(latency.Seconds())
	if call.TTFB > 0 {
		s.ttfbSeries(m).Observe(call.TTFB.Seconds())
	}
	if u := call.Usage; u.PromptTokens > 0 || u.CompletionTokens > 0 {
		t := s.tokenSeries(m, u.Estimated)
		t.prompt.Add(float64(u.PromptTokens))
		t.completion.Add(float64(u.CompletionTokens))
	}
}

func (m *metrics) resolveCall(k callKey) any {
	s := &callSeries{
		requests: m.requests.WithLabelValues(k.surface, k.model, k.channel, strconv.Itoa(k.status)),
		latency:  m.latency.WithLabelValues(k.surface, k.model, k.channel),
		key:      k,
	}
	v, _ := m.calls.LoadOrStore(k, s)
	return v
}

// ttfbSeries and tokenSeries resolve their series on first use. Concurrent first uses resolve the same
// children, so whichever is stored is equivalent.
func (s *callSeries) ttfbSeries(m *metrics) *observer {
	if o := s.ttfb.Load(); o != nil {
		return o
	}
	o := &observer{m.ttfb.WithLabelValues(s.key.surface, s.key.model, s.key.channel)}
	s.ttfb.Store(o)
	return o
}

func (s *callSeries) tokenSeries(m *metrics, estimated bool) *tokenSeries {
	i, est := 0, "false"
	if estimated {
		i, est = 1, "true"
	}
	if t := s.tokens[i].Load(); t != nil {
		return t
	}
	t := &tokenSeries{
		prompt:     m.tokens.WithLabelValues(s.key.model, s.key.channel, "prompt", est),
		completion: m.tokens.WithLabelValues(s.key.model, s.key.channel, "completion", est),
	}
	s.tokens[i].Store(t)
	return t
}

// attemptFailed counts a failed upstream attempt. Nil-safe.
func (m *metrics) attemptFailed(channel string, status int) {
	if m == nil {
		return
	}
	k := failKey{channel: channel, status: status}
	v, ok := m.fails.Load(k)
	if !ok {
		v, _ = m.fails.LoadOrStore(k, m.failed.WithLabelValues(channel, strconv.Itoa(status)))
	}
	v.(prometheus.Counter).Inc()
}

// channelCollector reads each channel's breaker state and in-flight count at scrape time.
type channelCollector struct {
	channels        atomic.Pointer[[]*Channel]
	state, inflight *prometheus.Desc
}

func newChannelCollector() *channelCollector {
	return &channelCollector{
		state: prometheus.NewDesc("relay_channel_breaker_state",
			"Circuit breaker state per channel: 0 closed, 1 half-open, 2 open.", []string{"channel"}, nil),
		inflight: prometheus.NewDesc("relay_channel_inflight",
			"Upstream calls in flight per channel (streams until they end).", []string{"channel"}, nil),
	}
}

func (c *channelCollector) Describe(out chan<- *prometheus.Desc) {
	out <- c.state
	out <- c.inflight
}

func (c *channelCollector) Collect(out chan<- prometheus.Metric) {
	for _, ch := range *c.channels.Load() {
		b := ch.breaker
		b.mu.Lock()
		st := b.state
		b.mu.Unlock()
		out <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, breakerGauge(st), ch.Name)
		out <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(b.inflight.Load()), ch.Name)
	}
}

// breakerGauge maps a state to the gauge's scale, ordered by severity.
func breakerGauge(s breakerState) float64 {
	switch s {
	case stateHalfOpen:
		return 1
	case stateOpen:
		return 2
	}
	return 0
}

// storeCollector reads the store writer's counters once per scrape.
type storeCollector struct {
	st                                        store.Store
	queued, lastFlush                         *prometheus.Desc
	written, batches, blocked, failed, raised *prometheus.Desc
}

func newStoreCollector(st store.Store) *storeCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &storeCollector{
		st:        st,
		queued:    d("relay_store_queue_depth", "Log rows waiting in the store's write queue."),
		lastFlush: d("relay_store_last_flush_seconds", "Duration of the store writer's last batch commit."),
		written:   d("relay_store_rows_written_total", "Rows the store writer committed."),
		batches:   d("relay_store_batches_total", "Transactions the store writer committed."),
		blocked:   d("relay_store_enqueue_blocked_total", "Enqueues that waited because the write queue was full."),
		failed:    d("relay_store_rows_failed_total", "Rows lost to a failed store transaction."),
		raised:    d("relay_store_writer_raised_total", "Times the low-priority store writer fell behind and went back to normal priority."),
	}
}

func (c *storeCollector) Describe(out chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queued, c.lastFlush, c.written, c.batches, c.blocked, c.failed, c.raised} {
		out <- d
	}
}

func (c *storeCollector) Collect(out chan<- prometheus.Metric) {
	if c.st == nil {
		return
	}
	s := c.st.Stats()
	out <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued))
	out <- prometheus.MustNewConstMetric(c.lastFlush, prometheus.GaugeValue, s.LastFlush.Seconds())
	out <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(s.Written))
	out <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches))
	out <- prometheus.MustNewConstMetric(c.blocked, prometheus.CounterValue, float64(s.Blocked))
	out <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.Failed))
	out <- prometheus.MustNewConstMetric(c.raised, prometheus.CounterValue, float64(s.Raised))
}
