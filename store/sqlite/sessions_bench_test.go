package sqlite_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

// Session search over 100,000 sessions and record listing over a 10,000-record session, with p50 and
// p99 latencies reported (go test -run ^$ -bench Sessions ./store/sqlite/).

// fillSessions inserts n sessions for user (every 10th has "needle" in its title) and, in the first
// session, recs records, in one transaction each.
func fillSessions(b *testing.B, s *sqlite.Store, user int64, n, recs int) int64 {
	b.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO sessions(user_id, module, type, title, created_at, updated_at) VALUES (?, ?, 'chat', ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Unix(1_700_000_000, 0).UnixMilli()
	for i := 0; i < n; i++ {
		title := fmt.Sprintf("conversation %d about things", i)
		if i%10 == 0 {
			title = fmt.Sprintf("needle %d", i)
		}
		if _, err := st.Exec(user, 1+i%2, title, base+int64(i), base+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	var first int64
	_ = s.DB().QueryRow(`SELECT min(id) FROM sessions WHERE user_id = ?`, user).Scan(&first)
	tx, _ = s.DB().BeginTx(ctx, nil)
	st, _ = tx.Prepare(`INSERT INTO records(session_id, author_id, problem_text, answer_text, status, created_at, updated_at)
		VALUES (?, ?, 'a question of some length', 'an answer of some more length than the question', 'finished_success', ?, ?)`)
	for i := 0; i < recs; i++ {
		if _, err := st.Exec(first, user, base+int64(i), base+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return first
}

// timed runs f b.N times and reports p50 and p99 in microseconds.
func timed(b *testing.B, f func() error) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkSessions(b *testing.B) {
	s, err := sqlite.Open(b.TempDir()+"/bench.db", sqlite.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	u, _ := s.CreateUser(ctx, store.User{Name: "heavy"})
	other, _ := s.CreateUser(ctx, store.User{Name: "other"})
	big := fillSessions(b, s, u.ID, 100_000, 10_000)
	fillSessions(b, s, other.ID, 1_000, 0)
	_, _ = s.DB().Exec(`ANALYZE`)
	cases := []struct {
		name string
		f    func() error
	}{
		{"search/list-page1", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Page: 1, Size: 20})
			return err
		}},
		{"search/module-page1", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Module: 2, Page: 1, Size: 20})
			return err
		}},
		{"search/title", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Title: "needle 99", Page: 1, Size: 20})
			return err
		}},
		{"search/title-common", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Title: "about", Page: 1, Size: 20})
			return err
		}},
		{"search/page-500", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Page: 500, Size: 100})
			return err
		}},
		{"search/small-user", func() error {
			_, _, err := s.SearchSessions(ctx, store.SessionFilter{UserID: other.ID, Page: 1, Size: 20})
			return err
		}},
		{"records/page1", func() error {
			_, _, err := s.ListRecords(ctx, u.ID, big, 1, 20)
			return err
		}},
		{"records/page-100", func() error {
			_, _, err := s.ListRecords(ctx, u.ID, big, 100, 100)
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { timed(b, c.f) })
	}
}
