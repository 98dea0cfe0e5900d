package sqlite_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

// threadsWithNice counts this process's threads whose nice value is n (field 19 of
// /proc/self/task/<tid>/stat; the fields are counted after the command name, which may hold spaces).
func threadsWithNice(t *testing.T, n int) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil || len(stats) == 0 {
		t.Fatalf("no thread stats: %v", err)
	}
	count := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended meanwhile
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields 3 onwards
		if len(fields) < 17 {
			t.Fatalf("short stat line %q", s)
		}
		if v, err := strconv.Atoi(fields[19-3]); err == nil && v == n {
			count++
		}
	}
	return count
}

func waitThreadsWithNice(t *testing.T, n, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for threadsWithNice(t, n) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d threads with nice %d, want %d", threadsWithNice(t, n), n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The writer runs on one thread of its own at the nice value asked for, still commits, and takes the
// thread with it when the store closes (a niced thread must not go back to running other goroutines).
func TestWriterNice(t *testing.T) {
	const nice = 7
	if threadsWithNice(t, nice) != 0 {
		t.Fatal("a thread already has the test's nice value")
	}
	s := openStore(t, dbPath(t), sqlite.Options{WriterNice: nice, FlushInterval: time.Millisecond})
	waitThreadsWithNice(t, nice, 1)
	for i := 0; i < 100; i++ {
		s.Log(store.LogRow{Time: time.Now(), RequestID: "r" + strconv.Itoa(i), Surface: "openai", Status: 200})
	}
	deadline := time.Now().Add(testTimeout)
	for s.Stats().Written < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("niced writer committed %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitThreadsWithNice(t, nice, 0)
}

func TestWriterNiceOutOfRange(t *testing.T) {
	for _, n := range []int{-1, 20} {
		if s, err := sqlite.Open(dbPath(t), sqlite.Options{WriterNice: n, Logger: quietLogger()}); err == nil {
			s.Close()
			t.Errorf("WriterNice %d accepted", n)
		}
	}
}

// A low-priority writer that falls behind goes back to normal priority (its niced thread ends) and,
// once it has kept up for 500 flush intervals, lowers its priority again. No row is lost on the way.
func TestWriterNiceFallsBehind(t *testing.T) {
	const nice = 8
	// Behind means a transaction begins with an eighth of the queue (8 rows here) waiting.
	s := openStore(t, dbPath(t), sqlite.Options{WriterNice: nice, QueueSize: 64, FlushInterval: time.Millisecond})
	waitThreadsWithNice(t, nice, 1)
	logged := 0
	logRows := func(n int) {
		for i := 0; i < n; i++ {
			logged++
			s.Log(store.LogRow{Time: time.Now(), RequestID: "r" + strconv.Itoa(logged), Surface: "openai", Status: 200})
		}
	}
	// Another connection holds the write lock, so the writer's first commit waits while rows queue.
	tx, err := s.DB().BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	logRows(1)
	for s.Stats().Queued != 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // past the flush interval: the writer waits on the lock
	logRows(40)
	if st := s.Stats(); st.Raised != 0 || st.Written != 0 {
		t.Fatalf("stats while the lock is held: %+v", st)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitThreadsWithNice(t, nice, 0)
	if st := s.Stats(); st.Raised != 1 {
		t.Fatalf("stats after falling behind: %+v", st)
	}
	// A trickle, one row at a time: the writer keeps up, and after 500 ms (500 flush intervals) it is
	// back on a niced thread.
	deadline := time.Now().Add(testTimeout)
	for threadsWithNice(t, nice) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the writer never lowered its priority again: %+v", s.Stats())
		}
		logRows(1)
		time.Sleep(2 * time.Millisecond)
	}
	logRows(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Written != int64(logged) || st.Failed != 0 || st.Raised != 1 || st.Queued != 0 {
		t.Fatalf("stats at close (%d rows logged): %+v", logged, st)
	}
	waitThreadsWithNice(t, nice, 0)
}
