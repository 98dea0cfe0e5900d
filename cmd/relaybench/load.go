package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is one way to reach a mock: directly, through the floor proxy, or through the relay (whose
// model picks the mock: bench → the OpenAI mock, bench-hunyuan → the Hunyuan-shaped one).
type target struct {
	name  string
	url   string // chat completions URL
	key   string
	model string // the request's model
}

// loadSpec is one measured run: n requests (or until max elapses) over conc connections.
type loadSpec struct {
	stream bool
	conc   int
	n      int
	max    time.Duration
	body   []byte
}

// loadResult holds the raw samples of one run; latencies are of successful requests only.
type loadResult struct {
	ok, errs int
	firstErr string
	wall     time.Duration
	lat      []time.Duration // whole answer read
	ttfb     []time.Duration // streams: first data event
	gaps     []time.Duration // streams: between consecutive chunk events
}

func (r *loadResult) merge(o *loadResult) {
	r.ok += o.ok
	r.errs += o.errs
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
	r.lat = append(r.lat, o.lat...)
	r.ttfb = append(r.ttfb, o.ttfb...)
	r.gaps = append(r.gaps, o.gaps...)
}

// newClient is the load generator's HTTP client: enough idle connections per host that every worker
// keeps its own (Go's default of two would measure connection setup instead of the proxies).
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext:         loopbackDialer(10 * time.Second),
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// chatBody is the request every lane sends; streams always ask for usage, as billing clients do.
func chatBody(model string, stream bool) []byte {
	s := `{"model":"` + model + `","messages":[{"role":"system","content":"You are terse."},` +
		`{"role":"user","content":"Say something about relays in a few sentences."}],"max_tokens":600`
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return []byte(s + "}")
}

// runLoad runs spec against t with spec.conc workers sharing one request budget.
func runLoad(ctx context.Context, c *http.Client, t target, spec loadSpec) loadResult {
	var issued atomic.Int64
	deadline := time.Now().Add(spec.max)
	parts := make([]loadResult, spec.conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range parts {
		wg.Add(1)
		go func(r *loadResult) {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 64<<10)
			for issued.Add(1) <= int64(spec.n) && time.Now().Before(deadline) && ctx.Err() == nil {
				if err := doRequest(ctx, c, t, spec, br, r); err != nil {
					r.errs++
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
				} else {
					r.ok++
				}
			}
		}(&parts[i])
	}
	wg.Wait()
	var res loadResult
	res.wall = time.Since(start)
	for i := range parts {
		res.merge(&parts[i])
	}
	slices.Sort(res.lat)
	slices.Sort(res.ttfb)
	slices.Sort(res.gaps)
	return res
}

var (
	dataPrefix = []byte("data:")
	doneData   = []byte("[DONE]")
	errorData  = []byte(`{"error"`)
)

// doRequest sends one request and reads the whole answer, recording its timings in r on success.
func doRequest(ctx context.Context, c *http.Client, t target, spec loadSpec, br *bufio.Reader, r *loadResult) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(spec.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.key)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if !spec.stream {
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil && n == 0 {
			err = errors.New("empty answer")
		}
		if err != nil {
			return err
		}
		r.lat = append(r.lat, time.Since(start))
		return nil
	}
	br.Reset(resp.Body)
	gaps0 := len(r.gaps)
	var first, prev time.Time
	events := 0
	for {
		line, err := readLineHead(br)
		if err != nil {
			r.gaps = r.gaps[:gaps0]
			return fmt.Errorf("stream ended before [DONE] after %d events: %w", events, err)
		}
		data, ok := bytes.CutPrefix(line, dataPrefix)
		if !ok {
			continue
		}
		now := time.Now()
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, doneData) {
			break
		}
		if bytes.HasPrefix(data, errorData) {
			r.gaps = r.gaps[:gaps0]
			return fmt.Errorf("error event: %.200s", data)
		}
		if events == 0 {
			first = now
		} else {
			r.gaps = append(r.gaps, now.Sub(prev))
		}
		prev = now
		events++
	}
	// Read to EOF so the connection goes back to the pool.
	io.Copy(io.Discard, br)
	if events == 0 {
		return errors.New("stream without chunks")
	}
	r.ttfb = append(r.ttfb, first.Sub(start))
	r.lat = append(r.lat, time.Since(start))
	return nil
}

// readLineHead returns the start of the next line (up to the reader's buffer size) and skips the rest:
// only the first bytes of an event are inspected.
func readLineHead(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	head := slices.Clone(line)
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = br.ReadSlice('\n')
	}
	return head, err
}
