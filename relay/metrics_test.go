package relay_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"relay/adaptor/openai/openaitest"
)

// scrape GETs /metrics (no key) and parses the text format.
func scrape(t *testing.T, tr *testRelay) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(tr.URL, "/v1") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return fams, string(b)
}

// series finds the sample of family name whose labels are exactly labels (name=value pairs).
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	mf := fams[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.Metric {
		if len(m.Label) != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value (-1 when the series is absent).
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(fams, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

// histCount is a histogram's sample count (-1 when the series is absent).
func histCount(fams map[string]*dto.MetricFamily, name string, labels ...string) int {
	m := series(fams, name, labels...)
	if m == nil || m.Histogram == nil {
		return -1
	}
	return int(m.Histogram.GetSampleCount())
}

// total sums a family's counter values.
func total(fams map[string]*dto.MetricFamily, name string) float64 {
	var n float64
	if mf := fams[name]; mf != nil {
		for _, m := range mf.Metric {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

// scrapeWhen scrapes until ok holds (a stream's row is accounted just after its last byte went out).
func scrapeWhen(t *testing.T, tr *testRelay, ok func(map[string]*dto.MetricFamily) bool) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams, text := scrape(t, tr)
		if ok(fams) {
			return fams, text
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never settled:\n%s", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func drain(t *testing.T, resp *http.Response, want int) string {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, b)
	}
	return string(b)
}

// Successful, failed, retried and streamed requests show up in /metrics with exact counts; a tripped
// channel's breaker reads open; the store writer's gauges are there; no key is needed and none leaks.
func TestMetrics(t *testing.T) {
	good := openaitest.New(openaitest.Options{Answer: "Hello there, friend."})
	defer good.Close()
	bad := openaitest.New(openaitest.Options{Status: 503})
	defer bad.Close()
	down := openaitest.New(openaitest.Options{Status: 500})
	defer down.Close()
	est := openaitest.New(openaitest.Options{Answer: "estimated answer", NoUsage: true})
	defer est.Close()
	flaky := openaitest.New(openaitest.Options{ErrorAfter: 2})
	defer flaky.Close()

	badCh := openaiChannel("bad", bad.BaseURL(), "m1")
	badCh.Priority, badCh.BreakerThreshold, badCh.BreakerCooldown = 10, 1, time.Hour
	tr := newTestRelay(t, nil, badCh, openaiChannel("good", good.BaseURL(), "m1"),
		openaiChannel("down", down.BaseURL(), "m2"), openaiChannel("est", est.BaseURL(), "m3"),
		openaiChannel("flaky", flaky.BaseURL(), "m4"))

	// Before any request: channel gauges exist, every breaker closed.
	fams, _ := scrape(t, tr)
	for _, ch := range []string{"bad", "good", "down", "est", "flaky"} {
		if v := value(fams, "relay_channel_breaker_state", "channel", ch); v != 0 {
			t.Fatalf("breaker of %s before traffic: %v", ch, v)
		}
	}

	const ask = `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	// 1: bad answers 503 and trips (threshold 1); the request moves on to good. 2: bad is skipped.
	drain(t, tr.post(tr.Key, ask), 200)
	drain(t, tr.post(tr.Key, ask), 200)
	// 3: a stream on m1, with usage.
	drain(t, tr.post(tr.Key, `{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`), 200)
	// 4, 5: m2's only channel fails; the client gets its 500.
	drain(t, tr.post(tr.Key, `{"model":"m2","messages":[{"role":"user","content":"hi"}]}`), 500)
	drain(t, tr.post(tr.Key, `{"model":"m2","messages":[{"role":"user","content":"hi"}]}`), 500)
	// 6: no usage upstream: estimated tokens.
	drain(t, tr.post(tr.Key, `{"model":"m3","messages":[{"role":"user","content":"hi"}]}`), 200)
	// 7: a stream that fails after two chunks (HTTP 200 already sent; logged with the failure's status).
	if body := drain(t, tr.post(tr.Key, `{"model":"m4","stream":true,"messages":[{"role":"user","content":"hi"}]}`), 200); !strings.Contains(body, `"error"`) {
		t.Fatalf("mid-stream failure not framed: %s", body)
	}
	if n := bad.Requests.Load(); n != 1 {
		t.Fatalf("tripped channel got %d requests", n)
	}

	fams, text := scrapeWhen(t, tr, func(f map[string]*dto.MetricFamily) bool {
		return total(f, "relay_requests_total") == 7 && value(f, "relay_store_rows_written_total") >= 7
	})

	// Requests by surface, model, channel and status.
	req := func(model, channel, status string) float64 {
		return value(fams, "relay_requests_total", "surface", "openai", "model", model, "channel", channel, "status", status)
	}
	if v := req("m1", "good", "200"); v != 3 {
		t.Errorf("m1/good/200 = %v, want 3", v)
	}
	if v := req("m2", "down", "500"); v != 2 {
		t.Errorf("m2/down/500 = %v, want 2", v)
	}
	if v := req("m3", "est", "200"); v != 1 {
		t.Errorf("m3/est/200 = %v, want 1", v)
	}
	if v := req("m4", "flaky", "502"); v != 1 {
		t.Errorf("m4/flaky/502 = %v, want 1", v)
	}
	if v := req("m1", "bad", "503"); v != -1 {
		t.Errorf("a retried-away failure is not a request's outcome, got %v", v)
	}

	// Failed attempts by channel and status: the retried 503 and both 500s.
	if v := value(fams, "relay_upstream_failed_attempts_total", "channel", "bad", "status", "503"); v != 1 {
		t.Errorf("failed attempts bad/503 = %v, want 1", v)
	}
	if v := value(fams, "relay_upstream_failed_attempts_total", "channel", "down", "status", "500"); v != 2 {
		t.Errorf("failed attempts down/500 = %v, want 2", v)
	}
	if v := total(fams, "relay_upstream_failed_attempts_total"); v != 3 {
		t.Errorf("failed attempts in all = %v, want 3", v)
	}

	// Histograms: every request has a latency; only streams a time to first byte.
	lat := func(model, channel string) int {
		return histCount(fams, "relay_request_duration_seconds", "surface", "openai", "model", model, "channel", channel)
	}
	ttfb := func(model, channel string) int {
		return histCount(fams, "relay_time_to_first_byte_seconds", "surface", "openai", "model", model, "channel", channel)
	}
	if a, b, c, d := lat("m1", "good"), lat("m2", "down"), lat("m3", "est"), lat("m4", "flaky"); a != 3 || b != 2 || c != 1 || d != 1 {
		t.Errorf("latency counts %d %d %d %d, want 3 2 1 1", a, b, c, d)
	}
	if a, b := ttfb("m1", "good"), ttfb("m4", "flaky"); a != 1 || b != 1 {
		t.Errorf("ttfb counts %d %d, want 1 1", a, b)
	}
	if c := ttfb("m2", "down"); c != -1 {
		t.Errorf("a failure before the first byte has a ttfb series: %d", c)
	}

	// Tokens: the mock reports 11 prompt tokens and one completion token per chunk (4).
	tok := func(model, channel, kind, estimated string) float64 {
		return value(fams, "relay_tokens_total", "model", model, "channel", channel, "kind", kind, "estimated", estimated)
	}
	if p, c := tok("m1", "good", "prompt", "false"), tok("m1", "good", "completion", "false"); p != 33 || c != 12 {
		t.Errorf("m1 tokens prompt %v completion %v, want 33 12", p, c)
	}
	if p, c := tok("m3", "est", "prompt", "true"), tok("m3", "est", "completion", "true"); p <= 0 || c <= 0 {
		t.Errorf("estimated tokens prompt %v completion %v", p, c)
	}
	if v := tok("m2", "down", "prompt", "false"); v != -1 {
		t.Errorf("tokens counted for a failed request: %v", v)
	}

	// Breakers: bad is open (2), the rest closed; nothing in flight.
	for ch, want := range map[string]float64{"bad": 2, "good": 0, "down": 0, "est": 0, "flaky": 0} {
		if v := value(fams, "relay_channel_breaker_state", "channel", ch); v != want {
			t.Errorf("breaker of %s = %v, want %v", ch, v, want)
		}
		if v := value(fams, "relay_channel_inflight", "channel", ch); v != 0 {
			t.Errorf("in flight on %s = %v", ch, v)
		}
	}

	// Store writer gauges and counters.
	for _, name := range []string{"relay_store_queue_depth", "relay_store_last_flush_seconds", "relay_store_rows_written_total",
		"relay_store_rows_failed_total", "relay_store_enqueue_blocked_total", "relay_store_batches_total",
		"relay_store_writer_raised_total"} {
		if value(fams, name) < 0 {
			t.Errorf("%s missing", name)
		}
	}
	if v := value(fams, "relay_store_rows_failed_total"); v != 0 {
		t.Errorf("rows failed %v", v)
	}
	if value(fams, "relay_store_batches_total") < 1 {
		t.Errorf("no batch committed")
	}

	if strings.Contains(text, "sk-upstream-secret") || strings.Contains(text, tr.Key) {
		t.Fatal("/metrics leaks a key")
	}

	// The log agrees with the counters: the same statuses and token totals.
	var prompt, completion int
	statuses := map[int]int{}
	for _, r := range tr.logs() {
		statuses[r.Status]++
		if r.Model == "m3" {
			prompt, completion = r.Usage.PromptTokens, r.Usage.CompletionTokens
		}
	}
	if statuses[200] != 4 || statuses[500] != 2 || statuses[502] != 1 {
		t.Errorf("log statuses %v", statuses)
	}
	if tok("m3", "est", "prompt", "true") != float64(prompt) || tok("m3", "est", "completion", "true") != float64(completion) {
		t.Errorf("estimated tokens differ from the log's %d/%d", prompt, completion)
	}
}

// Each server has its own registry: two relays in one process count apart.
func TestMetricsPerServer(t *testing.T) {
	a := newTestRelay(t, nil, demoChannel())
	b := newTestRelay(t, nil, demoChannel())
	drain(t, a.post(a.Key, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`), 200)
	fa, _ := scrapeWhen(t, a, func(f map[string]*dto.MetricFamily) bool { return total(f, "relay_requests_total") == 1 })
	fb, _ := scrape(t, b)
	if v := value(fa, "relay_requests_total", "surface", "openai", "model", "demo", "channel", "demo", "status", "200"); v != 1 {
		t.Fatalf("relay a counted %v", v)
	}
	if v := total(fb, "relay_requests_total"); v != 0 {
		t.Fatalf("relay b counted %v", v)
	}
}
