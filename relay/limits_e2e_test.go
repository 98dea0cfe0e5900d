package relay_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

func limitedKey(t *testing.T, tr *testRelay, k store.Key) string {
	t.Helper()
	secret := "sk-relay-limited-" + k.Name
	k.Prefix, k.Hash = secret[:12], relay.HashKey(secret)
	if _, err := tr.Store.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return secret
}

// A second concurrent stream over the key's limit gets 429 with Retry-After; openai-go waits that long
// and retries once, and the retry succeeds after the first stream ended.
func TestMaxStreamsAndSDKRetry(t *testing.T) {
	slow := demoChannel()
	slow.Credentials = map[string]string{"chunk_delay": "60ms"}
	tr := newTestRelay(t, nil, slow)
	key := limitedKey(t, tr, store.Key{Name: "one-stream", MaxStreams: 1})
	client := openai.NewClient(option.WithBaseURL(tr.URL), option.WithAPIKey(key), option.WithMaxRetries(2))
	first := client.Chat.Completions.NewStreaming(context.Background(), userParams("demo", "a b c d e f"))
	if !first.Next() { // the first stream is open
		t.Fatal(first.Err())
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		s := client.Chat.Completions.NewStreaming(context.Background(), userParams("demo", "second"))
		for s.Next() {
		}
		done <- s.Err()
	}()
	for first.Next() {
	}
	if err := first.Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("retried stream failed: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("the SDK retried after %v, before Retry-After (1s)", d)
	}
	rows := tr.logs()
	var limited int
	for _, r := range rows {
		if r.Status == 429 {
			limited++
		}
	}
	if len(rows) != 3 || limited != 1 {
		t.Fatalf("%d rows, %d limited; want 3 rows, 1 limited (no hammering)", len(rows), limited)
	}
}

// A key's token quota is enforced, spent tokens are written to the store, and the SDK does not retry an
// exhausted quota (x-should-retry: false).
func TestQuotaExhaustedNotRetried(t *testing.T) {
	tr := newTestRelay(t, nil, demoChannel())
	key := limitedKey(t, tr, store.Key{Name: "small", QuotaTokens: 60})
	client := openai.NewClient(option.WithBaseURL(tr.URL), option.WithAPIKey(key), option.WithMaxRetries(3))
	var spent int64
	var apiErr *openai.Error
	for i := 0; i < 10; i++ {
		comp, err := client.Chat.Completions.New(context.Background(), userParams("demo", "hello there"))
		if err != nil {
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "insufficient_quota" {
				t.Fatalf("request %d: %v", i, err)
			}
			break
		}
		spent += comp.Usage.TotalTokens
	}
	if apiErr == nil || spent == 0 || spent > 60 {
		t.Fatalf("quota not enforced: spent %d, err %v", spent, apiErr)
	}
	rows := tr.logs()
	n429 := 0
	for _, r := range rows {
		if r.Status == 429 {
			n429++
		}
	}
	if n429 != 1 {
		t.Fatalf("%d quota refusals logged: the SDK retried", n429)
	}
	st, err := sqlite.Open(tr.Path, sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, _ := st.ListKeys(context.Background())
	for _, k := range keys {
		if k.Name == "small" && k.UsedTokens != spent {
			t.Fatalf("stored used_tokens %d, want %d", k.UsedTokens, spent)
		}
	}
}
