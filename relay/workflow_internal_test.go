package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"relay/adaptor"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"relay/store"
)

func TestPrivateAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "10.0.0.1": true, "172.16.5.4": true, "172.31.255.255": true, "192.168.0.1": true,
		"169.254.169.254": true, "0.0.0.0": true, "0.1.2.3": true, "100.64.0.1": true, "100.100.100.200": true, "224.0.0.1": true,
		"255.255.255.255": true, "198.18.0.1": true, "::1": true, "::": true, "fe80::1": true, "fc00::1": true, "fd12:3456::1": true,
		"::ffff:127.0.0.1": true, "::ffff:10.0.0.1": true, "64:ff9b::a00:1": true, "64:ff9b::7f00:1": true, "ff02::1": true, "fe80::1%eth0": true,
		"2002:7f00:1::": true,
		"8.8.8.8":       false, "93.184.216.34": false, "172.32.0.1": false, "100.128.0.1": false, "2606:4700::1111": false,
		"::ffff:8.8.8.8": false, "64:ff9b::808:808": false, "192.169.0.1": false,
	} {
		if got := adaptor.PrivateAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("adaptor.PrivateAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestCheckCallbackURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for raw, want := range map[string]string{
		"https://93.184.216.34/cb?x=1":        "",
		"http://[2606:4700::1111]:8443/hook":  "",
		"https://user:pw@93.184.216.34/cb":    "",
		"http://127.0.0.1:8080/cb":            "private",
		"http://LOCALHOST/cb":                 "private",
		"http://localhost./cb":                "private",
		"http://x.localhost/cb":               "private",
		"http://[::ffff:169.254.169.254]/":    "private",
		"ftp://93.184.216.34/":                "http or https",
		"javascript:alert(1)":                 "http or https",
		"http:///nohost":                      "must name a host",
		"http://%zz/":                         "not a valid URL",
		"http://" + strings.Repeat("a", 2100): "at most",
		"http://no-such-host.invalid/cb":      "cannot be resolved",
	} {
		e := checkCallbackURL(ctx, raw, false)
		switch {
		case want == "" && e != nil:
			t.Errorf("%s: refused: %s", raw, e.Message)
		case want != "" && (e == nil || !strings.Contains(e.Message, want) || e.Status != 400 || e.Param != "callback"):
			t.Errorf("%s: got %v, want an error saying %q", raw, e, want)
		}
	}
	// allow_private lets loopback through (scheme checks still apply).
	if e := checkCallbackURL(ctx, "http://127.0.0.1:9/cb", true); e != nil {
		t.Fatal(e)
	}
	if e := checkCallbackURL(ctx, "file:///etc/passwd", true); e == nil {
		t.Fatal("file URL accepted")
	}
}

// The dialer checks the address it actually connects to: a host name that resolves to loopback passes
// no name check but is refused at connect time.
func TestCallbackDialRefusesPrivate(t *testing.T) {
	var hit atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Store(true) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	r := &jobRunner{client: newCallbackClient(CallbacksConfig{Timeout: 2 * time.Second}), secret: "s"}
	for _, u := range []string{srv.URL + "/cb", "http://localhost:" + port + "/cb"} {
		status, errText := r.post(context.Background(), store.Job{ID: "task_x", Callback: u, Result: []byte(`{}`)}, 1)
		if status != 0 || errText != errPrivateDestination.Error() {
			t.Fatalf("%s: status %d err %q", u, status, errText)
		}
	}
	if hit.Load() {
		t.Fatal("the private receiver was reached")
	}
	// Allowed, the same receiver is reached, and a redirect is not followed.
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL, http.StatusFound)
	}))
	defer redir.Close()
	r.client = newCallbackClient(CallbacksConfig{Timeout: 2 * time.Second, AllowPrivate: true})
	if status, errText := r.post(context.Background(), store.Job{ID: "task_x", Callback: redir.URL, Result: []byte(`{}`)}, 1); status != 302 || errText != "HTTP 302" || hit.Load() {
		t.Fatalf("redirect: %d %q hit=%v", status, errText, hit.Load())
	}
	if status, errText := r.post(context.Background(), store.Job{ID: "task_x", Callback: srv.URL, Result: []byte(`{}`)}, 1); status != 200 || errText != "" || !hit.Load() {
		t.Fatalf("allowed: %d %q", status, errText)
	}
}

func TestCallbackBackoff(t *testing.T) {
	r := &jobRunner{cb: CallbacksConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		for k := 0; k < 50; k++ {
			if d := r.backoff(i + 1); d < w/2 || d > w {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", i+1, d, w/2, w)
			}
		}
	}
	if r.backoff(1000) > time.Second {
		t.Fatal("backoff overflowed its cap")
	}
}

func TestWorkflowFramerNamed(t *testing.T) {
	var w bytes.Buffer
	f := &workflowFramer{openAIFramer: &openAIFramer{w: &w}, detail: true}
	for _, c := range []struct{ name, data, want string }{
		{"flowNodeStatus", `{"status":"running","name":"AI"}`, "event: flowNodeStatus\ndata: {\"status\":\"running\",\"name\":\"AI\"}\n\n"},
		{"flowResponses", `[{"nodeId":"a"}]`, "event: flowResponses\ndata: {\"data\":[{\"nodeId\":\"a\"}]}\n\n"},
		{"flowNodeResponse", `{"nodeId":"a","error":"x"}`, "event: flowNodeResponse\ndata: {\"data\":{\"nodeId\":\"a\",\"error\":\"x\"}}\n\n"},
		{"updateVariables", "{\n  \"a\": \"b\"\n}", "event: updateVariables\ndata: {\"a\":\"b\"}\n\n"},
		{"workflowDuration", `2.5`, "event: workflowDuration\ndata: {\"data\":2.5}\n\n"},
		{"bad\nname", `{}`, ""},
	} {
		w.Reset()
		if err := f.Named(c.name, []byte(c.data)); err != nil || w.String() != c.want {
			t.Fatalf("%s: %q %v, want %q", c.name, w.String(), err, c.want)
		}
	}
	w.Reset()
	f.detail = false
	if f.Named("flowNodeStatus", []byte(`{}`)); w.Len() != 0 {
		t.Fatalf("without detail: %q", w.String())
	}
}

func TestReadWorkflowFields(t *testing.T) {
	for body, want := range map[string]struct {
		present bool
		f       wfFields
		errOn   string
	}{
		`{"model":"m","messages":[]}`:                                                  {},
		`{"model":"m","is_batch":false,"work_id":"","callback":null}`:                  {},
		`{"work_id":"w","is_batch":true,"callback":"http://x","event_type":"fastgpt"}`: {present: true, f: wfFields{workID: "w", isBatch: true, callback: "http://x", eventType: "fastgpt"}},
		`{"is_batch":true}`:                   {present: true, f: wfFields{isBatch: true}},
		`{"work_id":1}`:                       {present: true, errOn: "work_id"},
		`{"is_batch":"true"}`:                 {present: true, errOn: "is_batch"},
		`{"event_type":false}`:                {present: true, errOn: "event_type"},
		`{"messages":[{"work_id":"nested"}]}`: {},
	} {
		f, present, e := readWorkflowFields([]byte(body))
		if present != want.present || (want.errOn == "" && (e != nil || f != want.f)) || (want.errOn != "" && (e == nil || e.Param != want.errOn)) {
			t.Errorf("%s: %+v %v %v", body, f, present, e)
		}
	}
}

func TestStripControl(t *testing.T) {
	in := []byte(`{"model":"m","work_id":"w","event_type":"fastgpt","is_batch":true,"callback":"http://x","messages":[{"role":"user","content":"work_id"}],"chat_id":"c"}`)
	if got := string(stripControl(in)); got != `{"model":"m","messages":[{"role":"user","content":"work_id"}],"chat_id":"c"}` {
		t.Fatalf("stripped %s", got)
	}
}

// A runner stopped while a delivery is in flight releases it (no attempt counted) once the grace ends.
func TestRunnerStopCancelsAfterGrace(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	st := &fakeJobs{}
	r := &jobRunner{st: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), client: newCallbackClient(CallbacksConfig{Timeout: 10 * time.Second, AllowPrivate: true}),
		cb: CallbacksConfig{MaxAttempts: 3, MaxAge: time.Hour, InitialBackoff: time.Second, MaxBackoff: time.Second}, secret: "s",
		stopping: make(chan struct{}), done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.sends.Add(1)
	r.wg.Add(1)
	go r.deliver(store.Job{ID: "task_s", Callback: srv.URL, Result: []byte(`{}`), CompletedAt: time.Now()})
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r.stop(ctx)
	if d := time.Since(start); d < 90*time.Millisecond || d > 3*time.Second {
		t.Fatalf("stop took %v", d)
	}
	if st.released != "task_s" || st.recorded != 0 {
		t.Fatalf("released %q, recorded %d", st.released, st.recorded)
	}
}

type fakeJobs struct {
	store.Jobs
	released string
	recorded int
}

func (f *fakeJobs) ReleaseDelivery(_ context.Context, id string) error { f.released = id; return nil }
func (f *fakeJobs) RecordAttempt(context.Context, string, store.JobAttempt, store.JobStatus, time.Time) error {
	f.recorded++
	return nil
}
