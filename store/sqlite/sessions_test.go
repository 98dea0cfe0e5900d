package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"relay/store"
	"relay/store/sqlite"
)

func mustUser(t testing.TB, s *sqlite.Store, name, role string) store.User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), store.User{Name: name, Role: role})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func TestUsersCreateAndLookup(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	a := mustUser(t, s, "alice", store.RoleAdmin)
	if a.ID == 0 || a.Role != store.RoleAdmin || !a.IsAdmin() {
		t.Fatalf("created %+v", a)
	}
	if _, err := s.CreateUser(ctx, store.User{Name: "alice"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate name: %v, want ErrExists", err)
	}
	if _, err := s.CreateUser(ctx, store.User{Name: "x", Role: "root"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	b := mustUser(t, s, "bob", "")
	if b.Role != store.RoleUser {
		t.Fatalf("default role %q", b.Role)
	}
	got, err := s.UserByName(ctx, "bob")
	if err != nil || got.ID != b.ID {
		t.Fatalf("UserByName: %+v %v", got, err)
	}
	if got, err = s.UserByID(ctx, a.ID); err != nil || got.Name != "alice" {
		t.Fatalf("UserByID: %+v %v", got, err)
	}
	if _, err := s.UserByID(ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
	list, err := s.ListUsers(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "bob" {
		t.Fatalf("ListUsers: %+v %v", list, err)
	}
}

func TestKeyBelongsToUser(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	u := mustUser(t, s, "carol", "")
	k, err := s.CreateKey(ctx, store.Key{Name: "k", Prefix: "rk-1", Hash: "h1", UserID: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.KeyByHash(ctx, "h1")
	if err != nil || got.UserID != u.ID || got.ID != k.ID {
		t.Fatalf("KeyByHash: %+v %v", got, err)
	}
}

func TestSessionsOwnerEnforced(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	alice, bob := mustUser(t, s, "alice", ""), mustUser(t, s, "bob", "")
	ss, err := s.CreateSession(ctx, store.Session{UserID: alice.ID, Title: "first", Strategy: "grid", Module: store.ModuleStrategy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, bob.ID, ss.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob reads alice's session: %v", err)
	}
	got, err := s.GetSession(ctx, alice.ID, ss.ID)
	if err != nil || got.Title != "first" || got.UserName != "alice" || got.Strategy != "grid" || got.Module != store.ModuleStrategy {
		t.Fatalf("GetSession: %+v %v", got, err)
	}
	if err := s.RenameSession(ctx, bob.ID, ss.ID, "pwned"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob renames: %v", err)
	}
	got.Title, got.Abstract, got.DocumentIDs = "x", "y", []int64{3, 4}
	if err := s.UpdateSession(ctx, bob.ID, got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob updates: %v", err)
	}
	if err := s.SetSessionDocuments(ctx, bob.ID, ss.ID, []int64{9}, false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob adds files: %v", err)
	}
	if _, err := s.AddRecord(ctx, bob.ID, store.Record{SessionID: ss.ID, ProblemText: "q"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob adds a record: %v", err)
	}
	if _, _, err := s.ListRecords(ctx, bob.ID, ss.ID, 1, 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob lists records: %v", err)
	}
	r, err := s.AddRecord(ctx, alice.ID, store.Record{SessionID: ss.ID, ProblemText: "q"})
	if err != nil || r.Status != store.StatusProcessing {
		t.Fatalf("AddRecord: %+v %v", r, err)
	}
	r.AnswerText, r.Status = "a", store.StatusSuccess
	if err := s.UpdateRecord(ctx, bob.ID, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob updates a record: %v", err)
	}
	if err := s.DeleteSession(ctx, bob.ID, ss.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob deletes: %v", err)
	}
	if list, total, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: bob.ID}); total != 0 || len(list) != 0 {
		t.Fatalf("bob's search sees %d", total)
	}
	if _, total, _ := s.SearchSessions(ctx, store.SessionFilter{}); total != 0 {
		t.Fatalf("UserID 0 sees %d sessions", total)
	}
	// Alice's own calls work.
	if err := s.UpdateRecord(ctx, alice.ID, r); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSession(ctx, alice.ID, got); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSessionDocuments(ctx, alice.ID, ss.ID, []int64{4, 5}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSessionDocuments(ctx, alice.ID, ss.ID, []int64{3}, true); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetSession(ctx, alice.ID, ss.ID)
	if got.Title != "x" || got.Abstract != "y" || fmt.Sprint(got.DocumentIDs) != "[4 5]" || got.TotalRecords != 1 {
		t.Fatalf("after update: %+v", got)
	}
	recs, total, err := s.ListRecords(ctx, alice.ID, ss.ID, 1, 10)
	if err != nil || total != 1 || recs[0].AnswerText != "a" || recs[0].Status != store.StatusSuccess {
		t.Fatalf("ListRecords: %+v %d %v", recs, total, err)
	}
	if any, err := s.GetSessionAny(ctx, ss.ID); err != nil || any.ID != ss.ID {
		t.Fatalf("GetSessionAny: %v", err)
	}
	if err := s.DeleteSession(ctx, alice.ID, ss.ID); err != nil {
		t.Fatal(err)
	}
	var n int
	_ = s.DB().QueryRow(`SELECT count(*) FROM records`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d records left after delete", n)
	}
}

func TestSessionSearchPagingAndLiteralTitles(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	u, other := mustUser(t, s, "dora", ""), mustUser(t, s, "eve_admin", store.RoleAdmin)
	base := time.Unix(1_700_000_000, 0)
	titles := []string{"100% sure", "under_score", "it's quoted", "x' OR '1'='1", "plain", `back\slash`}
	var ids []int64
	for i := 0; i < 25; i++ {
		title := fmt.Sprintf("chat %d", i)
		if i < len(titles) {
			title = titles[i]
		}
		mod := store.ModuleChat
		if i%5 == 0 {
			mod = store.ModuleSpark
		}
		// Two sessions share each timestamp: the id breaks the tie.
		ss, err := s.CreateSession(ctx, store.Session{UserID: u.ID, Title: title, Module: mod, CreatedAt: base.Add(time.Duration(i/2) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ss.ID)
	}
	if _, err := s.CreateSession(ctx, store.Session{UserID: other.ID, Title: "100% other"}); err != nil {
		t.Fatal(err)
	}
	// Pages cover all 25 newest first with no gap or repeat.
	var seen []int64
	for page := 1; page <= 3; page++ {
		list, total, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Page: page, Size: 10})
		if err != nil || total != 25 {
			t.Fatalf("page %d: total %d err %v", page, total, err)
		}
		for _, ss := range list {
			seen = append(seen, ss.ID)
		}
	}
	if len(seen) != 25 {
		t.Fatalf("paged %d sessions", len(seen))
	}
	for i, id := range seen {
		if id != ids[24-i] {
			t.Fatalf("order at %d: got %d want %d (%v)", i, id, ids[24-i], seen)
		}
	}
	// Size is capped.
	if list, _, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Size: 1000}); len(list) != 25 {
		t.Fatalf("size 1000 gave %d", len(list))
	}
	if l, o := store.PageBounds(0, 1000); l != store.MaxPageSize || o != 0 {
		t.Fatalf("PageBounds(0,1000) = %d,%d", l, o)
	}
	cases := map[string]int64{"%": 1, "_": 1, "'": 2, "x' OR '1'='1": 1, `\`: 1, "chat": 19, "": 25, "nothing": 0}
	for q, want := range cases {
		_, total, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Title: q})
		if err != nil || total != want {
			t.Errorf("title %q: total %d err %v, want %d", q, total, err, want)
		}
	}
	if _, total, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Module: store.ModuleSpark}); total != 5 {
		t.Errorf("module 2: %d", total)
	}
	// Admin search across users, by user name and time range.
	if _, total, _ := s.SearchSessions(ctx, store.SessionFilter{AllUsers: true, Title: "100%"}); total != 2 {
		t.Errorf("all users 100%%: %d", total)
	}
	if _, total, _ := s.SearchSessions(ctx, store.SessionFilter{AllUsers: true, UserName: "_"}); total != 1 {
		t.Errorf("user name _: %d", total)
	}
	_, total, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Since: base.Add(2 * time.Second), Until: base.Add(3 * time.Second)})
	if total != 4 {
		t.Errorf("time range: %d", total)
	}
}

func TestRecordsPagingNewestFirst(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	u := mustUser(t, s, "fred", "")
	ss, _ := s.CreateSession(ctx, store.Session{UserID: u.ID})
	at := time.Unix(1_700_000_000, 0)
	for i := 0; i < 7; i++ {
		if _, err := s.AddRecord(ctx, u.ID, store.Record{SessionID: ss.ID, ProblemText: fmt.Sprint(i), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	p1, total, err := s.ListRecords(ctx, u.ID, ss.ID, 1, 3)
	if err != nil || total != 7 || len(p1) != 3 || p1[0].ProblemText != "6" || p1[2].ProblemText != "4" {
		t.Fatalf("page 1: %+v %d %v", p1, total, err)
	}
	p3, _, _ := s.ListRecords(ctx, u.ID, ss.ID, 3, 3)
	if len(p3) != 1 || p3[0].ProblemText != "0" {
		t.Fatalf("page 3: %+v", p3)
	}
	p9, total, err := s.ListRecords(ctx, u.ID, ss.ID, 9, 3)
	if err != nil || len(p9) != 0 || total != 7 {
		t.Fatalf("page 9: %+v %d %v", p9, total, err)
	}
	if n, err := s.FailProcessingRecords(ctx); err != nil || n != 7 {
		t.Fatalf("FailProcessingRecords: %d %v", n, err)
	}
	p1, _, _ = s.ListRecords(ctx, u.ID, ss.ID, 1, 1)
	if p1[0].Status != store.StatusFail {
		t.Fatalf("status %q", p1[0].Status)
	}
}

// LogConversation goes through the async writer: the session is created on first use, later turns are
// appended to it, and Close drains everything.
func TestLogConversationThroughWriter(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path, sqlite.Options{Logger: quietLogger(), FlushInterval: time.Hour, BatchSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u := mustUser(t, s, "gina", "")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s.LogConversation(store.Conversation{UserID: u.ID, ExtID: "chat-1", Title: "  first\n question  ",
				Record: store.Record{ProblemText: fmt.Sprint("q", i), AnswerText: "the answer", Model: "demo",
					Usage: store.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}}})
		}(i)
	}
	wg.Wait()
	s.LogConversation(store.Conversation{UserID: u.ID, ExtID: "other", Title: "solo", Record: store.Record{ProblemText: "p", Status: store.StatusFail}})
	s.LogConversation(store.Conversation{UserID: 0, ExtID: "x", Record: store.Record{ProblemText: "nobody"}})
	s.LogConversation(store.Conversation{UserID: 999, ExtID: "x", Record: store.Record{ProblemText: "no such user"}})
	// Nothing is visible before the writer flushes (the flush interval is an hour).
	if _, total, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID}); total != 0 {
		t.Fatalf("written before flush: %d", total)
	}
	closeStore(t, s)
	if st := s.Stats(); st.Failed != 0 {
		t.Fatalf("writer failed %d rows", st.Failed)
	}
	s = openStore(t, path, sqlite.Options{})
	list, total, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID})
	if err != nil || total != 2 {
		t.Fatalf("sessions: %d %v", total, err)
	}
	chat, err := s.SessionByExtID(ctx, u.ID, store.ModuleChat, "chat-1")
	if err != nil || chat.Title != "first question" || chat.Abstract != "the answer" || chat.TotalRecords != 20 {
		t.Fatalf("chat session: %+v %v", chat, err)
	}
	if list[0].ExtID != "other" || list[0].Abstract != "" {
		t.Fatalf("solo session: %+v", list[0])
	}
	recs, _, _ := s.ListRecords(ctx, u.ID, chat.ID, 1, 100)
	if len(recs) != 20 || recs[0].Usage.TotalTokens != 5 || recs[0].Status != store.StatusSuccess || recs[0].AuthorID != u.ID {
		t.Fatalf("records: %d %+v", len(recs), recs[0])
	}
	var n int
	_ = s.DB().QueryRow(`SELECT count(*) FROM sessions`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d sessions in all (want none for unknown users)", n)
	}
}

// The trigger-kept counts behind unfiltered lists follow inserts, module changes and deletes.
func TestSessionCountsFollowChanges(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path, sqlite.Options{})
	ctx := context.Background()
	u := mustUser(t, s, "hal", "")
	var ids []int64
	for i := 0; i < 5; i++ {
		ss, err := s.CreateSession(ctx, store.Session{UserID: u.ID})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ss.ID)
	}
	s.LogConversation(store.Conversation{UserID: u.ID, ExtID: "e", Record: store.Record{ProblemText: "q"}})
	closeStore(t, s) // drains the writer
	s = openStore(t, path, sqlite.Options{})
	total := func(module int) int64 {
		t.Helper()
		_, n, err := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Module: module})
		if err != nil {
			t.Fatal(err)
		}
		// The unfiltered count must agree with a filtered one (which scans).
		_, scanned, _ := s.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Module: module, Since: time.Unix(1, 0)})
		if scanned != n {
			t.Fatalf("count %d vs %d", n, scanned)
		}
		return n
	}
	if n := total(0); n != 6 {
		t.Fatalf("total %d", n)
	}
	ss, _ := s.GetSession(ctx, u.ID, ids[0])
	ss.Module = store.ModuleSpark
	if err := s.UpdateSession(ctx, u.ID, ss); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, u.ID, ids[1]); err != nil {
		t.Fatal(err)
	}
	if a, b, c := total(0), total(store.ModuleChat), total(store.ModuleSpark); a != 5 || b != 4 || c != 1 {
		t.Fatalf("after changes: all %d chat %d spark %d", a, b, c)
	}
	var scanned int64
	_ = s.DB().QueryRow(`SELECT count(*) FROM sessions WHERE user_id = ? AND module = 1`, u.ID).Scan(&scanned)
	if scanned != 4 {
		t.Fatalf("table has %d chat sessions", scanned)
	}
}

func TestFillSessionOnlyFillsEmpty(t *testing.T) {
	s := openStore(t, dbPath(t), sqlite.Options{})
	ctx := context.Background()
	u, other := mustUser(t, s, "ida", ""), mustUser(t, s, "jon", "")
	ss, _ := s.CreateSession(ctx, store.Session{UserID: u.ID, Title: "kept"})
	if err := s.FillSession(ctx, other.ID, ss.ID, "x", "y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other user: %v", err)
	}
	if err := s.FillSession(ctx, u.ID, ss.ID, "new title", "first answer"); err != nil {
		t.Fatal(err)
	}
	if err := s.FillSession(ctx, u.ID, ss.ID, "", "second answer"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetSession(ctx, u.ID, ss.ID)
	if got.Title != "kept" || got.Abstract != "first answer" {
		t.Fatalf("filled: %+v", got)
	}
}
