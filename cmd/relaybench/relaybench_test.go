package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
	for _, want := range []string{"| 32 | relay |", "| 1 | floor |", "## Memory", "| relay | 50/50 |"} {
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

func TestParseMachineBusy(t *testing.T) {
	got, err := parseMachineBusy("cpu  1000 10 500 9000 20 5 30 100 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if want := 1610 / clkTck(); err != nil || got != want {
		t.Errorf("parseMachineBusy = %v, %v; want %v", got, err, want)
	}
}
