package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relay/adaptor/openai/openaitest"
	"relay/store/sqlite"
)

// relayProc is a relay binary running `serve`.
type relayProc struct {
	cmd    *exec.Cmd
	base   string // http://host:port
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // stderr drained (the process exited)
}

func (p *relayProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startRelay runs `bin -config cfg serve` and waits for its "relay listening" line (JSON logs).
func startRelay(t *testing.T, bin, cfg string) *relayProc {
	t.Helper()
	p := &relayProc{cmd: exec.Command(bin, "-config", cfg, "-log-format", "json", "serve"), done: make(chan struct{})}
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
			p.cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var v struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &v) == nil && v.Msg == "relay listening" {
				addr <- v.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		p.base = "http://" + a
	case <-p.done:
		t.Fatalf("relay exited before listening:\n%s", p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("relay not listening after 20s:\n%s", p.log())
	}
	return p
}

// kill sends sig and waits for the process to exit.
func (p *relayProc) kill(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("relay did not exit after %v:\n%s", sig, p.log())
	}
	return p.cmd.Wait()
}

// buildRelay builds the relay binary into dir.
func buildRelay(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "relay")
	build := exec.CommandContext(ctx, goTool(), "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// chat sends one chat request and returns the response (the caller closes it).
func chat(ctx context.Context, client *http.Client, base, key string, stream bool) (*http.Response, error) {
	body := fmt.Sprintf(`{"model":"m1","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	return client.Do(req)
}

// quickChat sends a non-stream request and returns its request id when it was answered with 200.
func quickChat(ctx context.Context, client *http.Client, base, key string) (string, error) {
	resp, err := chat(ctx, client, base, key, false)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp.Header.Get("X-Request-Id"), nil
}

// TestKill9KeepsCommittedRows kills the relay with SIGKILL while 100 streams are in flight and quick
// requests keep coming, then restarts it on the same SQLite file: it serves again, the database is
// intact (WAL, integrity_check ok) and every row committed before the kill is there. Only rows of
// requests still in flight, or answered within the writer's last flush interval, may be missing.
func TestKill9KeepsCommittedRows(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	const streams = 100
	deadline := time.Now().Add(2 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	dir := t.TempDir()
	t0 := time.Now()
	bin := buildRelay(ctx, t, dir)
	t.Logf("go build: %v", time.Since(t0).Round(time.Millisecond))

	// Streams of 200 chunks, 100ms apart: far longer than the test lets them run.
	up := openaitest.New(openaitest.Options{Answer: strings.Repeat("word ", 200), Chunks: 200, ChunkDelay: 100 * time.Millisecond})
	defer up.Close()
	db := filepath.Join(dir, "data", "relay.db")
	cfg := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
server:
  shutdown_grace: 2s
store:
  path: %s
  flush_interval: 50ms
channels:
  - name: up
    kind: openai
    enabled: true
    base_url: %s
    keys: [sk-upstream-kill]
    models: [m1]
`, db, up.BaseURL())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "-config", cfg, "keys", "create", "--name", "kill").Output()
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	key := strings.TrimSpace(string(out))

	p := startRelay(t, bin, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams + 8}}
	defer client.CloseIdleConnections()

	// Phase 1: quick requests, then time for the writer to commit them (it flushes every 50ms).
	var committed []string
	for i := 0; i < 20; i++ {
		id, err := quickChat(ctx, client, p.base, key)
		if err != nil || id == "" {
			t.Fatalf("quick request %d: %q %v", i, id, err)
		}
		committed = append(committed, id)
	}
	time.Sleep(300 * time.Millisecond)

	// Phase 2: 100 long streams, and quick requests that keep coming until the kill.
	var started sync.WaitGroup
	started.Add(streams)
	var streamsDone sync.WaitGroup
	var streamErrs sync.Map
	for i := 0; i < streams; i++ {
		streamsDone.Add(1)
		go func() {
			defer streamsDone.Done()
			once := sync.OnceFunc(started.Done)
			defer once()
			resp, err := chat(ctx, client, p.base, key, true)
			if err != nil {
				streamErrs.Store(err.Error(), true)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				streamErrs.Store(fmt.Sprintf("status %d", resp.StatusCode), true)
				return
			}
			rd := bufio.NewReader(resp.Body)
			for {
				line, err := rd.ReadString('\n')
				if strings.HasPrefix(line, "data: ") {
					once()
				}
				if err != nil {
					return // the kill
				}
			}
		}()
	}
	type answered struct {
		id string
		at time.Time
	}
	var late []answered
	stopQuick := make(chan struct{})
	quickDone := make(chan struct{})
	go func() {
		defer close(quickDone)
		for {
			select {
			case <-stopQuick:
				return
			default:
			}
			id, err := quickChat(ctx, client, p.base, key)
			if err != nil {
				return // the kill
			}
			late = append(late, answered{id, time.Now()})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	waitStarted := make(chan struct{})
	go func() { started.Wait(); close(waitStarted) }()
	select {
	case <-waitStarted:
	case <-time.After(30 * time.Second):
		t.Fatalf("streams did not start:\n%s", p.log())
	}
	streamErrs.Range(func(k, _ any) bool { t.Fatalf("stream failed before the kill: %v", k); return false })
	time.Sleep(200 * time.Millisecond)

	if err := p.kill(t, syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("relay exit after SIGKILL: %v", err)
	}
	killedAt := time.Now()
	close(stopQuick)
	<-quickDone
	streamsDone.Wait()
	walInfo, err := os.Stat(db + "-wal")
	if err != nil {
		t.Fatalf("no WAL file after the kill: %v", err)
	}
	t.Logf("%v since the start: killed with %d streams in flight and %d quick requests answered since phase 2; WAL %d bytes", time.Since(t0).Round(time.Millisecond), streams, len(late), walInfo.Size())

	// Restart on the same file: it opens the store (WAL recovery), serves, and shuts down cleanly.
	p2 := startRelay(t, bin, cfg)
	restartID, err := quickChat(ctx, client, p2.base, key)
	if err != nil || restartID == "" {
		t.Fatalf("request after restart: %q %v\n%s", restartID, err, p2.log())
	}
	resp, err := client.Get(p2.base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz after restart: %v %v", resp, err)
	}
	resp.Body.Close()
	if !strings.Contains(p2.log(), `"journal_mode":"wal"`) {
		t.Fatalf("restarted store not in WAL mode:\n%s", p2.log())
	}
	client.CloseIdleConnections()
	// serve logs "relay listening" and serves before it installs its signal handler, so a SIGTERM sent
	// too early would kill it outright; give it time (the writer commits the row meanwhile too).
	time.Sleep(300 * time.Millisecond)
	if err := p2.kill(t, syscall.SIGTERM); err != nil {
		if !strings.Contains(err.Error(), "terminated") {
			t.Fatalf("graceful stop after restart: %v\n%s", err, p2.log())
		}
		t.Logf("NOTE: SIGTERM killed the restarted relay before its handler was installed (%v)", err)
	}

	t.Logf("%v since the start: restarted, served, stopped", time.Since(t0).Round(time.Millisecond))
	st, err := sqlite.Open(db, sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("store does not open after the kill: %v", err)
	}
	defer st.Close()
	var mode, check string
	if err := st.DB().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	if err := st.DB().QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check %q %v", check, err)
	}
	n, err := st.CountLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.RecentLogs(ctx, 100000)
	if err != nil {
		t.Fatalf("RecentLogs after the kill: %v", err)
	}
	if len(rows) != n {
		t.Fatalf("RecentLogs %d rows, CountLogs %d", len(rows), n)
	}
	have := map[string]bool{}
	streamRows := 0
	for _, r := range rows {
		have[r.RequestID] = true
		if r.Stream {
			streamRows++
		}
	}
	for _, id := range append(committed, restartID) {
		if !have[id] {
			t.Errorf("row %s, committed before the kill (or logged after the restart), is missing", id)
		}
	}
	lostLate, oldestLost := 0, time.Duration(0)
	for _, a := range late {
		if have[a.id] {
			continue
		}
		lostLate++
		oldestLost = max(oldestLost, killedAt.Sub(a.at))
		// Answered rows older than a few flush intervals must have been committed.
		if age := killedAt.Sub(a.at); age > time.Second {
			t.Errorf("row %s answered %v before the kill is missing", a.id, age)
		}
	}
	t.Logf("after restart: %d rows (%d before the kill committed + %d of %d answered during phase 2 + 1 after restart; %d stream rows); "+
		"lost: %d answered quick requests (answered at most %v before the kill) and the %d in-flight streams, which had no row yet",
		n, len(committed), len(late)-lostLate, len(late), streamRows, lostLate, oldestLost.Round(time.Millisecond), streams-streamRows)
	if n < len(committed)+1 {
		t.Fatalf("%d rows, want at least %d", n, len(committed)+1)
	}
}

// A SIGTERM that arrives as soon as the relay says it is listening must still stop it gracefully
// (drain, close the store, exit 0).
func TestKillSIGTERMRightAfterListening(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildRelay(ctx, t, dir)
	cfg := filepath.Join(dir, "config.yaml")
	yaml := "listen: 127.0.0.1:0\nstore:\n  path: " + filepath.Join(dir, "relay.db") + "\nchannels:\n  - {name: demo, kind: demo, enabled: true, models: [demo]}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		p := startRelay(t, bin, cfg)
		if err := p.kill(t, syscall.SIGTERM); err != nil {
			t.Fatalf("start %d: SIGTERM right after \"relay listening\": %v\n%s", i, err, p.log())
		}
		if !strings.Contains(p.log(), `"msg":"stopped"`) {
			t.Fatalf("start %d: no graceful stop:\n%s", i, p.log())
		}
	}
}
