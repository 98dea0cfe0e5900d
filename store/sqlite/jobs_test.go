package sqlite_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

func newJob(id string, owner int64, callback string) store.Job {
	return store.Job{ID: id, Owner: owner, RequestID: "req_" + id, Surface: "workflow-batch", WorkID: "wf", ChatID: "chat-" + id,
		Request: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), Callback: callback}
}

func TestJobLifecycleWithCallback(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	created := time.UnixMilli(time.Now().UnixMilli())
	j := newJob("task_1", 7, "https://example.com/cb")
	j.CreatedAt = created
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, j); err == nil {
		t.Fatal("a duplicate job id was stored")
	}
	got, attempts, err := s.GetJob(ctx, "task_1", 7)
	if err != nil || got.Status != store.JobPending || got.Owner != 7 || string(got.Request) != string(j.Request) || got.Callback != j.Callback ||
		got.ChatID != "chat-task_1" || got.WorkID != "wf" || got.Surface != "workflow-batch" || !got.CreatedAt.Equal(created) || len(attempts) != 0 {
		t.Fatalf("GetJob = %+v %v %v", got, attempts, err)
	}
	// The owner is part of the query.
	if _, _, err := s.GetJob(ctx, "task_1", 8); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other owner: %v", err)
	}

	claimed, err := s.ClaimPendingJobs(ctx, 10)
	if err != nil || len(claimed) != 1 || claimed[0].Status != store.JobRunning || claimed[0].Runs != 1 || claimed[0].ID != "task_1" {
		t.Fatalf("claim = %+v %v", claimed, err)
	}
	if again, err := s.ClaimPendingJobs(ctx, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed twice: %+v %v", again, err)
	}
	now := time.Now()
	st, err := s.FinishJob(ctx, "task_1", 200, []byte(`{"ok":true}`), now)
	if err != nil || st != store.JobDelivering {
		t.Fatalf("finish = %q %v", st, err)
	}
	if _, err := s.FinishJob(ctx, "task_1", 200, []byte(`{}`), now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finished twice: %v", err)
	}
	at, ok, err := s.NextDelivery(ctx)
	if err != nil || !ok || at.UnixMilli() != now.UnixMilli() {
		t.Fatalf("next delivery %v %v %v", at, ok, err)
	}
	// Not due before its time; due at it.
	if early, err := s.ClaimDueDeliveries(ctx, now.Add(-time.Second), 5); err != nil || len(early) != 0 {
		t.Fatalf("claimed early: %+v %v", early, err)
	}
	d, err := s.ClaimDueDeliveries(ctx, now, 5)
	if err != nil || len(d) != 1 || d[0].Status != store.JobSending || string(d[0].Result) != `{"ok":true}` || d[0].ResultStatus != 200 || d[0].Attempts != 0 {
		t.Fatalf("claim delivery = %+v %v", d, err)
	}
	if _, ok, _ := s.NextDelivery(ctx); ok {
		t.Fatal("a sending job counts as waiting")
	}
	retryAt := now.Add(time.Minute)
	if err := s.RecordAttempt(ctx, "task_1", store.JobAttempt{Attempt: 1, At: now, Status: 503, Error: "HTTP 503", Duration: 1500 * time.Microsecond},
		store.JobDelivering, retryAt); err != nil {
		t.Fatal(err)
	}
	// Recording needs a sending job.
	if err := s.RecordAttempt(ctx, "task_1", store.JobAttempt{Attempt: 2}, store.JobDelivered, time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("attempt on a non-sending job: %v", err)
	}
	if err := s.RecordAttempt(ctx, "task_1", store.JobAttempt{Attempt: 2}, store.JobRunning, time.Time{}); err == nil {
		t.Fatal("a bad next status was accepted")
	}
	if d, _ := s.ClaimDueDeliveries(ctx, now.Add(59*time.Second), 5); len(d) != 0 {
		t.Fatal("retry claimed before its backoff")
	}
	if d, _ := s.ClaimDueDeliveries(ctx, retryAt, 5); len(d) != 1 || d[0].Attempts != 1 {
		t.Fatalf("retry claim = %+v", d)
	}
	delivered := now.Add(time.Minute)
	if err := s.RecordAttempt(ctx, "task_1", store.JobAttempt{Attempt: 2, At: delivered, Status: 204}, store.JobDelivered, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, attempts, err = s.GetJob(ctx, "task_1", 7)
	if err != nil || got.Status != store.JobDelivered || got.Attempts != 2 || got.DeliveredAt.UnixMilli() != delivered.UnixMilli() ||
		got.CompletedAt.UnixMilli() != now.UnixMilli() || string(got.Result) != `{"ok":true}` {
		t.Fatalf("delivered job = %+v %v", got, err)
	}
	if len(attempts) != 2 || attempts[0].Status != 503 || attempts[0].Error != "HTTP 503" || attempts[0].Duration != 1500*time.Microsecond ||
		attempts[1].Attempt != 2 || attempts[1].Status != 204 {
		t.Fatalf("attempts = %+v", attempts)
	}
	if _, a, err := s.GetJob(ctx, "task_1", 8); a != nil || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("attempts leaked to another owner: %v %v", a, err)
	}
}

func TestJobWithoutCallbackCompletes(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	if err := s.CreateJob(ctx, newJob("task_2", 1, "")); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.ClaimPendingJobs(ctx, 1); len(c) != 1 {
		t.Fatal("not claimed")
	}
	st, err := s.FinishJob(ctx, "task_2", 502, []byte(`{"error":{}}`), time.Now())
	if err != nil || st != store.JobCompleted {
		t.Fatalf("finish = %q %v", st, err)
	}
	if d, _ := s.ClaimDueDeliveries(ctx, time.Now().Add(time.Hour), 5); len(d) != 0 {
		t.Fatal("a job without callback was claimed for delivery")
	}
}

// A stop leaves jobs running or sending; ResetJobs makes them runnable again, and a released job is
// claimed again with its run counted.
func TestJobsResetAndRelease(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	ctx := ctxT(t)
	for _, id := range []string{"task_a", "task_b", "task_c"} {
		if err := s.CreateJob(ctx, newJob(id, 1, "https://example.com/cb")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.ClaimPendingJobs(ctx, 2)
	if err != nil || len(c) != 2 || c[0].ID == "task_c" || c[1].ID == "task_c" {
		t.Fatalf("oldest first: %+v %v", c, err)
	}
	if _, err := s.FinishJob(ctx, "task_a", 200, []byte(`{}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	if d, err := s.ClaimDueDeliveries(ctx, time.Now(), 5); err != nil || len(d) != 1 {
		t.Fatalf("delivery claim %+v %v", d, err)
	}
	closeStore(t, s) // task_a sending, task_b running, task_c pending

	s = openStore(t, path, sqlite.Options{})
	n, err := s.ResetJobs(ctx)
	if err != nil || n != 2 {
		t.Fatalf("reset %d %v", n, err)
	}
	if j, _, _ := s.GetJob(ctx, "task_a", 1); j.Status != store.JobDelivering {
		t.Fatalf("task_a %s", j.Status)
	}
	c, _ = s.ClaimPendingJobs(ctx, 5)
	if len(c) != 2 {
		t.Fatalf("after reset %+v", c)
	}
	for _, j := range c {
		if (j.ID == "task_b" && j.Runs != 2) || (j.ID == "task_c" && j.Runs != 1) {
			t.Fatalf("runs %s %d", j.ID, j.Runs)
		}
	}
	if err := s.ReleaseJob(ctx, "task_b"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseJob(ctx, "task_b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("released twice: %v", err)
	}
	if d, _ := s.ClaimDueDeliveries(ctx, time.Now(), 5); len(d) != 1 {
		t.Fatal("task_a not due after reset")
	}
	if err := s.ReleaseDelivery(ctx, "task_a"); err != nil {
		t.Fatal(err)
	}
	if j, a, _ := s.GetJob(ctx, "task_a", 1); j.Status != store.JobDelivering || j.Attempts != 0 || len(a) != 0 {
		t.Fatalf("released delivery counted an attempt: %+v", j)
	}
}

// Claims running at once never hand the same job out twice.
func TestJobClaimsConcurrent(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := ctxT(t)
	const n = 100
	for i := 0; i < n; i++ {
		if err := s.CreateJob(ctx, newJob("task_"+string(rune('A'+i/26))+string(rune('a'+i%26)), 1, "")); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := s.ClaimPendingJobs(ctx, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(c) == 0 {
					return
				}
				mu.Lock()
				for _, j := range c {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	within(t, testTimeout, "claims", wg.Wait)
	if len(seen) != n {
		t.Fatalf("%d jobs claimed, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("%s claimed %d times", id, k)
		}
	}
}
