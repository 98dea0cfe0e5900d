package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"relay/adaptor"
	"relay/adaptor/hunyuan"
)

// TestMain lets the test binary stand in for relaybench when the smoke test re-executes it as a child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fatal(err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	var xs []time.Duration
	for i := 1; i <= 100; i++ {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, time.Millisecond}, {50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {99.9, 100 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("empty: %v", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("single: %v", got)
	}
}

func TestSpreadOf(t *testing.T) {
	if s := spreadOf([]float64{5, 1, 3}); s != (spread{Min: 1, Med: 3, Max: 5, N: 3}) {
		t.Errorf("odd: %+v", s)
	}
	if s := spreadOf([]float64{4, 1, 2, 3}); s.Med != 2.5 || s.Min != 1 || s.Max != 4 {
		t.Errorf("even: %+v", s)
	}
	if s := spreadOf(nil); s.N != 0 {
		t.Errorf("empty: %+v", s)
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	stat := "4242 (relay (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 27 0 0 20 0 9 0 100 1000000 2000 18446744073709551615"
	got, err := parseStatTicks(stat)
	if err != nil || got != 177 {
		t.Fatalf("parseStatTicks = %d, %v; want 177", got, err)
	}
	if _, err := parseStatTicks("4242 (short) S 1"); err == nil {
		t.Error("short stat: want an error")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\trelay\nVmPeak:\t 1000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n"
	m, err := parseStatus(status)
	if err != nil || m.RSS != 10<<20 || m.HWM != 20<<20 {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := parseStatus("Name:\tkthread\n"); err == nil {
		t.Error("kernel thread without VmRSS: want an error")
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before, err := cpuSeconds("self")
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Millisecond); time.Now().Before(end); {
	}
	after, _ := cpuSeconds("self")
	if after <= before {
		t.Errorf("CPU did not grow: %v -> %v", before, after)
	}
	if m, err := readMem(os.Getpid()); err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("readMem = %+v, %v", m, err)
	}
}

func TestMockStream(t *testing.T) {
	srv := httptest.NewServer(newMock(mockOptions{Chunks: 5, Size: 101}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(chatBody("bench", true)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var content strings.Builder
	chunks, usage, done := 0, 0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct{ Content string }
			}
			Usage *struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if ev.Usage != nil {
			usage++
			continue
		}
		chunks++
		content.WriteString(ev.Choices[0].Delta.Content)
	}
	if chunks != 5 || usage != 1 || !done {
		t.Errorf("chunks %d usage %d done %v; want 5, 1, true", chunks, usage, done)
	}
	if content.String() != answerText(101) {
		t.Errorf("content %q", content.String())
	}

	resp2, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(chatBody("bench", false)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var comp struct {
		Object  string
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.NewDecoder(resp2.Body).Decode(&comp); err != nil || comp.Object != "chat.completion" || comp.Choices[0].Message.Content != answerText(101) {
		t.Errorf("completion %+v, %v", comp, err)
	}
}

func TestMockFailureAndLoad(t *testing.T) {
	srv := httptest.NewServer(newMock(mockOptions{Chunks: 3, Size: 10, Fail: 1}))
	defer srv.Close()
	r := runLoad(context.Background(), newClient(4), target{url: srv.URL + "/v1/chat/completions"},
		loadSpec{stream: true, conc: 2, n: 6, max: 10 * time.Second, body: chatBody("bench", true)})
	if r.ok != 0 || r.errs != 6 || !strings.Contains(r.firstErr, "500") {
		t.Errorf("ok %d errs %d (%s); want 0, 6, a 500", r.ok, r.errs, r.firstErr)
	}
}

func TestLoopbackOnly(t *testing.T) {
	dial := loopbackDialer(time.Second)
	if _, err := dial(context.Background(), "tcp", "192.0.2.1:80"); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Errorf("non-loopback dial: %v", err)
	}
}

func TestQuickFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-rounds", "3"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 3 || cfg.requests != 200 || cfg.streams != 200 {
		t.Errorf("quick with -rounds 3: rounds %d requests %d streams %d", cfg.rounds, cfg.requests, cfg.streams)
	}
	if _, err := parseFlags([]string{"-concurrency", "1,x"}, os.Stderr); err == nil {
		t.Error("bad -concurrency: want an error")
	}
}

// TestSmoke builds the relay and runs a very short benchmark end to end.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay; skipped with -short")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds", "1", "-requests", "40", "-warmup", "10", "-streams", "50", "-rss-wait", "0s", "-out", out}
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	md := stdout.String()
	for _, want := range []string{"| 32 | relay |", "| 1 | floor |", "| 1 | translate |", "| 32 | translate |", "## Memory", "| relay | 50/50 |", "| growth per stream |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if regexp.MustCompile(`\| [1-9][0-9]*/[0-9]+ \(`).MatchString(md) {
		t.Errorf("requests failed:\n%s\n%s", md, stderr.String())
	}
	if strings.Contains(md, "%!") {
		t.Errorf("report has a formatting error:\n%s", md)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*-quick.md"))
	if len(files) != 1 {
		t.Errorf("want one -quick.md in %s, got %v", out, files)
	}
	for _, lane := range laneNames {
		if !strings.Contains(md, "| "+lane+" |") {
			t.Errorf("no %s rows", lane)
		}
	}
}

func TestParseRuntimeSample(t *testing.T) {
	body := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\n" +
		"go_goroutines 2014\ngo_info{version=\"go1.26.8\"} 1\ngo_memstats_heap_alloc_bytes 3.7351296e+07\n" +
		"go_memstats_heap_inuse_bytes 4.0034304e+07\ngo_memstats_stack_inuse_bytes 1.9300352e+07\ngo_memstats_stack_sys_bytes 1\n"
	s, err := parseRuntimeSample(body)
	if err != nil {
		t.Fatal(err)
	}
	if want := (runtimeSample{goroutines: 2014, stack: 19300352, heapInuse: 40034304, heapAlloc: 37351296}); s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if _, err := parseRuntimeSample("go_goroutines 3\n"); err == nil {
		t.Error("metrics missing: want an error")
	}
	if _, err := parseRuntimeSample(strings.Replace(body, "2014", "many", 1)); err == nil {
		t.Error("a value that is no number: want an error")
	}
}

func TestParseMachineBusy(t *testing.T) {
	got, err := parseMachineBusy("cpu  1000 10 500 9000 20 5 30 100 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if want := 1610 / clkTck(); err != nil || got != want {
		t.Errorf("parseMachineBusy = %v, %v; want %v", got, err, want)
	}
}

// hunyuanPost sends a Hunyuan-native request to the mock the way the relay's adaptor does (headers only;
// the mock does not check the signature).
func hunyuanPost(t *testing.T, url string, stream bool, action string) *http.Response {
	t.Helper()
	body := `{"Model":"bench-hunyuan","Messages":[{"Role":"user","Content":"Hello"}],"Stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", action)
	req.Header.Set("X-TC-Version", "2023-09-01")
	req.Header.Set("X-TC-Timestamp", "1700000000")
	req.Header.Set("Authorization", "TC3-HMAC-SHA256 Credential=AKIDx/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// hunyuanFrame is a stream frame as the wire reference describes it.
type hunyuanFrame struct {
	Note    string
	Id      string
	Created int64
	Choices []struct {
		Index int
		Delta struct {
			Role    string
			Content *string
		}
		FinishReason *string
	}
	Usage *struct{ PromptTokens, CompletionTokens, TotalTokens int }
}

// TestHunyuanMockWire reads the mock's answers by the wire reference: data-only SSE frames with
// PascalCase fields, Role on every Delta, cumulative Usage on every frame, FinishReason only on the last,
// no [DONE]; a non-stream answer inside {"Response":...}; errors as Response.Error with HTTP 200.
func TestHunyuanMockWire(t *testing.T) {
	srv := httptest.NewServer(newHunyuanMock(mockOptions{Chunks: 6, Size: 103}))
	defer srv.Close()

	resp := hunyuanPost(t, srv.URL+"/", true, "ChatCompletions")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" || resp.Header.Get("X-TC-RequestId") == "" {
		t.Fatalf("stream answer: status %d, Content-Type %q, X-TC-RequestId %q", resp.StatusCode, ct, resp.Header.Get("X-TC-RequestId"))
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Split(string(raw), "\n\n")
	if last := events[len(events)-1]; last != "" {
		t.Fatalf("stream does not end with a blank line after the last frame: %q", last)
	}
	events = events[:len(events)-1]
	if len(events) != 6 {
		t.Fatalf("%d frames, want 6:\n%s", len(events), raw)
	}
	var content strings.Builder
	prevTokens := 0
	for i, e := range events {
		data, ok := strings.CutPrefix(e, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("frame %d is not one `data: ` line: %q", i, e)
		}
		if data == "[DONE]" {
			t.Fatalf("frame %d: Hunyuan sends no [DONE]", i)
		}
		var f hunyuanFrame
		if err := json.Unmarshal([]byte(data), &f); err != nil {
			t.Fatalf("frame %d %q: %v", i, data, err)
		}
		if strings.Contains(data, `"choices"`) || strings.Contains(data, `"delta"`) || strings.Contains(data, `"usage"`) {
			t.Errorf("frame %d has OpenAI (lower-case) fields: %s", i, data)
		}
		if f.Note != hunyuanNote || f.Id == "" || f.Created == 0 || len(f.Choices) != 1 || f.Usage == nil {
			t.Fatalf("frame %d lacks Note/Id/Created/Choices/Usage: %s", i, data)
		}
		c := f.Choices[0]
		if c.Delta.Role != "assistant" || c.Delta.Content == nil || c.FinishReason == nil {
			t.Errorf("frame %d: Delta.Role %q, Delta.Content and FinishReason must be present: %s", i, c.Delta.Role, data)
			continue
		}
		wantFinish := ""
		if i == len(events)-1 {
			wantFinish = "stop"
			if *c.Delta.Content != "" {
				t.Errorf("last frame carries content %q", *c.Delta.Content)
			}
		}
		if *c.FinishReason != wantFinish {
			t.Errorf("frame %d: FinishReason %q, want %q", i, *c.FinishReason, wantFinish)
		}
		content.WriteString(*c.Delta.Content)
		u := f.Usage
		if u.PromptTokens != mockPrompt || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.CompletionTokens < prevTokens {
			t.Errorf("frame %d: Usage %+v is not cumulative (previous CompletionTokens %d)", i, *u, prevTokens)
		}
		prevTokens = u.CompletionTokens
	}
	if content.String() != answerText(103) {
		t.Errorf("content %q, want %q", content.String(), answerText(103))
	}
	if prevTokens != 103/4 {
		t.Errorf("final CompletionTokens %d, want %d", prevTokens, 103/4)
	}

	resp = hunyuanPost(t, srv.URL+"/", false, "ChatCompletions")
	var comp struct {
		Response struct {
			RequestId, Id, Note string
			Choices             []struct {
				Message      struct{ Role, Content string }
				FinishReason string
			}
			Usage struct{ PromptTokens, CompletionTokens, TotalTokens int }
			Error *struct{ Code string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&comp); err != nil {
		t.Fatal(err)
	}
	r := comp.Response
	if r.Error != nil || r.RequestId == "" || len(r.Choices) != 1 || r.Choices[0].Message.Content != answerText(103) ||
		r.Choices[0].Message.Role != "assistant" || r.Choices[0].FinishReason != "stop" || r.Usage.TotalTokens != mockPrompt+103/4 {
		t.Errorf("non-stream answer %+v", r)
	}

	// Wrong action, wrong path, injected failure: Tencent's error body with HTTP 200, as JSON even for a stream.
	for _, tc := range []struct {
		url, action, code string
		opt               mockOptions
	}{
		{"/", "DescribeInstances", "InvalidAction", mockOptions{}},
		{"/v1/chat/completions", "ChatCompletions", "UnsupportedOperation", mockOptions{}},
		{"/", "ChatCompletions", "InternalError", mockOptions{Fail: 1}},
	} {
		s := httptest.NewServer(newHunyuanMock(tc.opt))
		resp := hunyuanPost(t, s.URL+tc.url, true, tc.action)
		var e struct {
			Response struct {
				Error struct{ Code, Message string }
			}
		}
		err := json.NewDecoder(resp.Body).Decode(&e)
		s.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || e.Response.Error.Code != tc.code {
			t.Errorf("%s %s: status %d, %+v, %v; want 200 and %s", tc.url, tc.action, resp.StatusCode, e, err, tc.code)
		}
	}
}

// TestHunyuanMockAdaptor runs the relay's own hunyuan adaptor (signing, stream decoder, response
// translation) against the mock, as the relay process does in the translate lane.
func TestHunyuanMockAdaptor(t *testing.T) {
	srv := httptest.NewServer(newHunyuanMock(mockOptions{Chunks: 21, Size: 2000}))
	defer srv.Close()
	ch := &adaptor.Channel{Name: "mock-hunyuan", Kind: "hunyuan", BaseURL: srv.URL + "/",
		Credentials: map[string]string{hunyuan.CredSecretID: "AKIDbenchEXAMPLE", hunyuan.CredSecretKey: "bench-secret-key"}}
	a := hunyuan.New()
	if err := a.Validate(ch); err != nil {
		t.Fatal(err)
	}
	req := func(stream bool) *adaptor.Request {
		return &adaptor.Request{Body: chatBody(hunyuanModel, stream), Model: hunyuanModel, UpstreamModel: hunyuanModel,
			Stream: stream, IncludeUsage: stream}
	}
	ctx := context.Background()

	evs, err := a.Stream(ctx, ch, req(true))
	if err != nil {
		t.Fatal(err)
	}
	var acc adaptor.Accumulator
	n := 0
	for {
		ev, err := evs.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d events: %v", n, err)
		}
		n++
		acc.Add(ev)
	}
	evs.Close()
	wantUsage := adaptor.Usage{PromptTokens: mockPrompt, CompletionTokens: 500, TotalTokens: mockPrompt + 500}
	if n != 21 || acc.Text() != answerText(2000) || acc.FinishReason() != "stop" || !acc.HasUsage || acc.Usage != wantUsage {
		t.Errorf("stream: %d events, finish %q, usage %+v (has %v), text ok %v; want 21, stop, %+v",
			n, acc.FinishReason(), acc.Usage, acc.HasUsage, acc.Text() == answerText(2000), wantUsage)
	}

	comp, err := a.Complete(ctx, ch, req(false))
	if err != nil {
		t.Fatal(err)
	}
	var oa struct {
		Object  string
		Model   string
		Choices []struct {
			Message      struct{ Role, Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal(comp.Body, &oa); err != nil {
		t.Fatalf("%s: %v", comp.Body, err)
	}
	if oa.Object != "chat.completion" || oa.Model != hunyuanModel || len(oa.Choices) != 1 ||
		oa.Choices[0].Message.Content != answerText(2000) || oa.Choices[0].FinishReason != "stop" || comp.Usage != wantUsage {
		t.Errorf("complete: %+v usage %+v", oa, comp.Usage)
	}

	// Injected failures reach the adaptor as an upstream error, not as an empty answer.
	bad := httptest.NewServer(newHunyuanMock(mockOptions{Chunks: 3, Size: 10, Fail: 1}))
	defer bad.Close()
	ch.BaseURL = bad.URL + "/"
	if _, err := a.Stream(ctx, ch, req(true)); adaptor.AsError(err) == nil || adaptor.AsError(err).Status < 500 {
		t.Errorf("injected failure on a stream: %v", err)
	}
	if _, err := a.Complete(ctx, ch, req(false)); adaptor.AsError(err) == nil || adaptor.AsError(err).Status < 500 {
		t.Errorf("injected failure: %v", err)
	}
}

// TestReportTranslateLane checks the translate rows and the translate ÷ passthrough CPU ratio.
func TestReportTranslateLane(t *testing.T) {
	b := &bench{cfg: config{rounds: 2, requests: 1000, mock: mockOptions{Chunks: 21, Size: 2000}}}
	b.cells = []cell{{stream: false, conc: 1}, {stream: true, conc: 32}}
	b.results = map[cell]map[string][]runStats{}
	// Relay CPU per 1,000: passthrough 0.20 and 0.30, translate 0.25 and 0.45 → ratios 1.25 and 1.50.
	run := func(rps, lat, relayCPU float64) runStats {
		return runStats{ok: 1000, total: 1000, rps: rps, p50: lat, p99: 2 * lat, ttfb50: lat / 2, ttfb99: lat, gap50: 5, gap99: 9,
			cpu: map[string]float64{"relay": relayCPU, "floor": 0.1, "mock": 0.05, "mock-hunyuan": 0.06, "loadgen": 0.2}}
	}
	for _, c := range b.cells {
		b.results[c] = map[string][]runStats{
			"direct":    {run(9000, 100, 0), run(9000, 100, 0)},
			"floor":     {run(7000, 150, 0), run(7000, 150, 0)},
			"relay":     {run(5000, 200, 0.2), run(5000, 200, 0.3)},
			"translate": {run(4000, 250, 0.25), run(4000, 250, 0.45)},
		}
	}
	md := b.report("2026-01-01")
	for _, want := range []string{
		"| 1 | translate | 4000 [4000–4000] | 250µs [250µs–250µs] | 500µs | +150µs [+150µs–+150µs] | +300µs | 0.350 [0.250–0.450] | 0/2000 |",
		"| 32 | translate | 4000 [4000–4000] | 250µs [250µs–250µs] | 500µs | +150µs [+150µs–+150µs] | +300µs | 125µs | +75µs [+75µs–+75µs] | +150µs | 5µs | 9µs | 0.350 [0.250–0.450] | 0/2000 |",
		"| relay − floor p50 | translate ÷ passthrough CPU/req |",
		"| non-stream c=1 | 0.56 [0.56–0.56] | 0.71 [0.71–0.71] | 0.78 [0.78–0.78] | 2.50 [2.00–3.00] | +50µs [+50µs–+50µs] | 1.38 [1.25–1.50] |",
		"| stream c=32 | 0.56 [0.56–0.56] | 0.71 [0.71–0.71] | 0.78 [0.78–0.78] | 2.50 [2.00–3.00] | +50µs [+50µs–+50µs] | 1.38 [1.25–1.50] |",
		// The CPU table charges translate to the relay and shows the Hunyuan-shaped mock's CPU.
		"| stream c=32 | translate | 0.350 [0.250–0.450] | 0.060 [0.060–0.060] | 0.200 [0.200–0.200] |",
		"| stream c=32 | relay | 0.250 [0.200–0.300] | 0.050 [0.050–0.050] | 0.200 [0.200–0.200] |",
		"**translate** = the same OpenAI request with model `bench-hunyuan`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, gone := range []string{"Not measured yet", "waits for that mock", "%!"} {
		if strings.Contains(md, gone) {
			t.Errorf("report contains %q:\n%s", gone, md)
		}
	}
	if got := cpuPer1k(b.results[b.cells[0]]["translate"][1], laneProc("translate")); math.Abs(got-0.45) > 1e-9 {
		t.Errorf("translate lane charged %v s/1k, want the relay's 0.45", got)
	}
}
