package relay

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"relay/adaptor"
	"relay/store"
)

// Operational endpoints: /readyz for load balancers and GET /v1/relay/channels for admins.

// readyz answers 200 when the store takes a write and every served model has a channel whose circuit
// is not open; 503 with the reasons otherwise. /healthz only says the process is up.
func (s *Server) readyz(c *gin.Context) {
	var problems []string
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.CheckWritable(ctx); err != nil {
		problems = append(problems, "store not writable")
	}
	now := time.Now()
	for _, m := range s.core.router.Load().Models() {
		ok := false
		for _, ch := range s.core.router.Load().byModel[m] {
			if ch.breaker.healthy(now) {
				ok = true
				break
			}
		}
		if !ok {
			problems = append(problems, "every channel of model "+m+" is tripped")
		}
	}
	b := []byte(`{"status":"ready"}`)
	status := http.StatusOK
	if len(problems) > 0 {
		status = http.StatusServiceUnavailable
		b = append(b[:0], `{"status":"not_ready","problems":[`...)
		for i, p := range problems {
			if i > 0 {
				b = append(b, ',')
			}
			b = adaptor.AppendJSONString(b, p)
		}
		b = append(b, "]}"...)
	}
	c.Data(status, "application/json", b)
}

// listChannels answers GET /v1/relay/channels (admin keys only): each channel's circuit state, recent
// error rate, latency and in-flight count. Never its keys or credentials.
func (s *Server) listChannels(c *gin.Context) {
	if !c.MustGet(ctxKey).(*store.Key).Admin {
		writeOpenAIError(c, &adaptor.Error{Status: 403, Type: adaptor.TypePermission, Code: "admin_required",
			Message: "This endpoint needs an admin key (relay keys create --admin)."})
		return
	}
	b := append(make([]byte, 0, 512), `{"object":"list","data":[`...)
	for i, ch := range s.core.router.Load().Channels() {
		if i > 0 {
			b = append(b, ',')
		}
		bs := ch.breaker.snapshot()
		b = append(b, `{"name":`...)
		b = adaptor.AppendJSONString(b, ch.Name)
		b = append(b, `,"kind":`...)
		b = adaptor.AppendJSONString(b, ch.Kind)
		b = append(b, `,"models":[`...)
		for j, m := range ch.Models {
			if j > 0 {
				b = append(b, ',')
			}
			b = adaptor.AppendJSONString(b, m)
		}
		b = append(b, `],"priority":`...)
		b = strconv.AppendInt(b, int64(ch.Priority), 10)
		b = append(b, `,"weight":`...)
		b = strconv.AppendInt(b, int64(ch.Weight), 10)
		b = append(b, `,"state":`...)
		b = adaptor.AppendJSONString(b, bs.State)
		b = append(b, `,"consecutive_failures":`...)
		b = strconv.AppendInt(b, int64(bs.Fails), 10)
		b = append(b, `,"open_until":`...)
		if bs.State == "closed" || bs.OpenUntil.IsZero() {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendInt(b, bs.OpenUntil.Unix(), 10)
		}
		b = append(b, `,"requests":`...)
		b = strconv.AppendInt(b, ch.breaker.requests.Load(), 10)
		b = append(b, `,"failures":`...)
		b = strconv.AppendInt(b, ch.breaker.failures.Load(), 10)
		b = append(b, `,"error_rate":`...)
		b = strconv.AppendFloat(b, float64(ch.breaker.errorEWMA.Load())/1e6, 'f', 4, 64)
		b = append(b, `,"latency_ms":`...)
		b = strconv.AppendFloat(b, float64(ch.breaker.latencyEWMA.Load())/1e6, 'f', 2, 64)
		b = append(b, `,"in_flight":`...)
		b = strconv.AppendInt(b, ch.breaker.inflight.Load(), 10)
		b = append(b, `,"keys":`...)
		b = strconv.AppendInt(b, int64(len(ch.Keys)), 10)
		b = append(b, `,"keys_set_aside":`...)
		b = strconv.AppendInt(b, int64(ch.badKeys(time.Now())), 10)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	c.Data(http.StatusOK, "application/json", b)
}
