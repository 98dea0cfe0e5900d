package sqlite

import (
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"relay/store"
)

// BenchmarkCommitBatch measures one writer transaction of the size a relay commits every flush interval
// at a few thousand requests/s (10 ms): the burst of CPU a commit takes from the request threads, which
// BenchmarkWriter's large batches hide.
func BenchmarkCommitBatch(b *testing.B) {
	for _, rows := range []int{8, 32} {
		b.Run(strconv.Itoa(rows)+"rows", func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w := s.w
			buf := make([]op, rows)
			for i := range buf {
				buf[i] = logOp(store.LogRow{Time: time.Now(), RequestID: "req-" + strconv.Itoa(i), KeyID: 1, Surface: "openai",
					Model: "bench", UpstreamModel: "bench", Channel: "mock", Stream: true, Status: 200,
					Latency: 12 * time.Millisecond, TTFB: 3 * time.Millisecond,
					Usage: store.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.commitOnce(b.Context(), buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
