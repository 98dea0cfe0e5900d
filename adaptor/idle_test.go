package adaptor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A non-stream answer whose body stalls after its headers is cut by the guard, and the error says so;
// a body that keeps coming, slower in total than the idle timeout but never quiet that long, is not.
func TestIdleGuardNonStreamBody(t *testing.T) {
	const idle = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		rc := http.NewResponseController(w)
		io.WriteString(w, `{"choices":[`)
		rc.Flush()
		if r.URL.Path == "/stall" {
			<-r.Context().Done()
			return
		}
		for i := 0; i < 6; i++ { // 6 × 80ms: longer than idle in total, never idle that long
			time.Sleep(80 * time.Millisecond)
			io.WriteString(w, ` `)
			rc.Flush()
		}
		io.WriteString(w, `]}`)
	}))
	defer srv.Close()
	ch := &Channel{Name: "t", BaseURL: srv.URL}
	get := func(path string) ([]byte, *Error, *IdleGuard, time.Duration) {
		ctx, cancel := context.WithCancel(context.Background())
		ctx, g := WithIdleGuard(ctx, idle, cancel)
		defer g.Stop()
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		resp, err := Send(ctx, ch, req, nil)
		if err != nil {
			return nil, g.Err(AsError(err)), g, time.Since(start)
		}
		defer resp.Body.Close()
		b, err := ReadBody(ctx, resp)
		if err != nil {
			return nil, g.Err(AsError(err)), g, time.Since(start)
		}
		return b, nil, g, time.Since(start)
	}
	_, e, g, took := get("/stall")
	if e == nil || e.Status != 504 || e.Code != "upstream_idle_timeout" || !g.Fired() || took > 5*idle {
		t.Fatalf("stalled body: %+v fired=%v after %v", e, g.Fired(), took)
	}
	b, e, g, _ := get("/slow")
	if e != nil || g.Fired() || string(b) != `{"choices":[      ]}` {
		t.Fatalf("slow body: %q %+v fired=%v", b, e, g.Fired())
	}
}
