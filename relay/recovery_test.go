package relay

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// A panic in a handler becomes a logged 500 in OpenAI's error shape, and the server keeps serving.
func TestRecoveryTurnsPanicIntoOpenAIError(t *testing.T) {
	var logged strings.Builder
	cfg, _ := LoadConfig("")
	s := NewServer(cfg, nil, nil, slog.New(slog.NewTextHandler(&logged, nil)))
	s.engine.GET("/boom", func(*gin.Context) { panic("boom") })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 500 || !strings.Contains(string(body), `"code":"internal_error"`) || strings.Contains(string(body), "boom") {
		t.Fatalf("%d %s", rec.Code, body)
	}
	if !strings.Contains(logged.String(), "panic") || !strings.Contains(logged.String(), "boom") {
		t.Fatalf("panic not logged: %s", logged.String())
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("healthz after panic: %d", rec.Code)
	}
}
