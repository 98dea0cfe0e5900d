package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"relay/store"
)

// --- users ---

// CreateUser inserts a user; store.ErrExists when the name is taken.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if u.Role == "" {
		u.Role = store.RoleUser
	}
	if u.Role != store.RoleUser && u.Role != store.RoleAdmin {
		return u, fmt.Errorf("store: role must be %s or %s, not %q", store.RoleUser, store.RoleAdmin, u.Role)
	}
	if strings.TrimSpace(u.Name) == "" {
		return u, errors.New("store: user name must not be empty")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO users(name, role, avatar, created_at) VALUES (?, ?, ?, ?)`,
		u.Name, u.Role, u.Avatar, u.CreatedAt.UnixMilli())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return u, store.ErrExists
		}
		return u, fmt.Errorf("store: create user: %w", err)
	}
	u.ID, _ = res.LastInsertId()
	return u, nil
}

const userColumns = `id, name, role, avatar, created_at`

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var created int64
	if err := row.Scan(&u.ID, &u.Name, &u.Role, &u.Avatar, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return u, store.ErrNotFound
		}
		return u, err
	}
	u.CreatedAt = time.UnixMilli(created)
	return u, nil
}

// UserByID reads a user.
func (s *Store) UserByID(ctx context.Context, id int64) (store.User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
}

// UserByName reads a user by name.
func (s *Store) UserByName(ctx context.Context, name string) (store.User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
}

// ListUsers lists users, newest first.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// --- sessions ---

func joinIDs(ids []int64) string {
	var b []byte
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(b)
}

func splitIDs(s string) []int64 {
	if s == "" {
		return nil
	}
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if id, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// CreateSession inserts a session for s.UserID.
func (s *Store) CreateSession(ctx context.Context, ss store.Session) (store.Session, error) {
	if ss.UserID == 0 {
		return ss, errors.New("store: session needs an owner")
	}
	if ss.Module == 0 {
		ss.Module = store.ModuleChat
	}
	if ss.Type == "" {
		ss.Type = "chat"
	}
	now := time.Now()
	if ss.CreatedAt.IsZero() {
		ss.CreatedAt = now
	}
	ss.UpdatedAt = ss.CreatedAt
	res, err := s.db.ExecContext(ctx, `INSERT INTO sessions(user_id, module, type, title, abstract, model_id, dataset_id,
		document_ids, strategy, meta, ext_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ss.UserID, ss.Module, ss.Type, ss.Title, ss.Abstract, ss.ModelID, ss.DatasetID, joinIDs(ss.DocumentIDs),
		ss.Strategy, ss.Meta, ss.ExtID, ss.CreatedAt.UnixMilli(), ss.UpdatedAt.UnixMilli())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return ss, store.ErrExists
		}
		if strings.Contains(err.Error(), "FOREIGN KEY") {
			return ss, store.ErrNotFound // no such user
		}
		return ss, fmt.Errorf("store: create session: %w", err)
	}
	ss.ID, _ = res.LastInsertId()
	return ss, nil
}

const sessionColumns = `s.id, s.user_id, u.name, s.module, s.type, s.title, s.abstract, s.model_id, s.dataset_id, s.document_ids,
	s.strategy, s.meta, s.ext_id, s.total_records, s.created_at, s.updated_at`

const sessionFrom = ` FROM sessions s JOIN users u ON u.id = s.user_id`

func scanSession(row interface{ Scan(...any) error }) (store.Session, error) {
	var ss store.Session
	var docs string
	var created, updated int64
	if err := row.Scan(&ss.ID, &ss.UserID, &ss.UserName, &ss.Module, &ss.Type, &ss.Title, &ss.Abstract, &ss.ModelID,
		&ss.DatasetID, &docs, &ss.Strategy, &ss.Meta, &ss.ExtID, &ss.TotalRecords, &created, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return ss, store.ErrNotFound
		}
		return ss, err
	}
	ss.DocumentIDs = splitIDs(docs)
	ss.CreatedAt, ss.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return ss, nil
}

// GetSession reads the user's session.
func (s *Store) GetSession(ctx context.Context, userID, id int64) (store.Session, error) {
	return scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+sessionFrom+` WHERE s.id = ? AND s.user_id = ?`, id, userID))
}

// GetSessionAny reads any user's session (admin).
func (s *Store) GetSessionAny(ctx context.Context, id int64) (store.Session, error) {
	return scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+sessionFrom+` WHERE s.id = ?`, id))
}

// SessionByExtID finds the user's session with an external key.
func (s *Store) SessionByExtID(ctx context.Context, userID int64, module int, extID string) (store.Session, error) {
	if extID == "" {
		return store.Session{}, store.ErrNotFound
	}
	return scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+sessionFrom+
		` WHERE s.user_id = ? AND s.module = ? AND s.ext_id = ?`, userID, module, extID))
}

func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// UpdateSession writes the session's editable fields.
func (s *Store) UpdateSession(ctx context.Context, userID int64, ss store.Session) error {
	if ss.Module == 0 {
		ss.Module = store.ModuleChat
	}
	if ss.Type == "" {
		ss.Type = "chat"
	}
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET module = ?, type = ?, title = ?, abstract = ?, model_id = ?,
		dataset_id = ?, document_ids = ?, strategy = ?, meta = ?, updated_at = ? WHERE id = ? AND user_id = ?`,
		ss.Module, ss.Type, ss.Title, ss.Abstract, ss.ModelID, ss.DatasetID, joinIDs(ss.DocumentIDs), ss.Strategy, ss.Meta,
		time.Now().UnixMilli(), ss.ID, userID)
	return affected(res, err, "update session")
}

// RenameSession sets the title of the user's session.
func (s *Store) RenameSession(ctx context.Context, userID, id int64, title string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET title = ?, updated_at = ? WHERE id = ? AND user_id = ?`,
		title, time.Now().UnixMilli(), id, userID)
	return affected(res, err, "rename session")
}

// FillSession sets an empty title and an empty abstract of the user's session.
func (s *Store) FillSession(ctx context.Context, userID, id int64, title, abstract string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET
		title = CASE WHEN title = '' THEN ? ELSE title END,
		abstract = CASE WHEN abstract = '' THEN ? ELSE abstract END
		WHERE id = ? AND user_id = ?`, title, abstract, id, userID)
	return affected(res, err, "fill session")
}

// SetSessionDocuments adds or removes document ids of the user's session, in one transaction.
func (s *Store) SetSessionDocuments(ctx context.Context, userID, id int64, docIDs []int64, remove bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var cur string
	if err := tx.QueryRowContext(ctx, `SELECT document_ids FROM sessions WHERE id = ? AND user_id = ?`, id, userID).Scan(&cur); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	}
	ids := splitIDs(cur)
	for _, d := range docIDs {
		i := slices.Index(ids, d)
		switch {
		case remove && i >= 0:
			ids = slices.Delete(ids, i, i+1)
		case !remove && i < 0:
			ids = append(ids, d)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET document_ids = ?, updated_at = ? WHERE id = ? AND user_id = ?`,
		joinIDs(ids), time.Now().UnixMilli(), id, userID); err != nil {
		return err
	}
	return tx.Commit()
}

// DeleteSession deletes the user's session; its records go with it (ON DELETE CASCADE).
func (s *Store) DeleteSession(ctx context.Context, userID, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id = ? AND user_id = ?`, id, userID)
	return affected(res, err, "delete session")
}

// likeEscaper makes a search text literal inside LIKE '%...%' ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func likeArg(s string) string { return "%" + likeEscaper.Replace(s) + "%" }

// SearchSessions lists matching sessions newest first and counts them all.
func (s *Store) SearchSessions(ctx context.Context, f store.SessionFilter) ([]store.Session, int64, error) {
	var where []string
	var args []any
	if !f.AllUsers {
		where, args = append(where, "s.user_id = ?"), append(args, f.UserID)
	}
	if f.Module != 0 {
		where, args = append(where, "s.module = ?"), append(args, f.Module)
	}
	if f.Title != "" {
		where, args = append(where, `s.title LIKE ? ESCAPE '\'`), append(args, likeArg(f.Title))
	}
	if f.UserName != "" {
		where, args = append(where, `u.name LIKE ? ESCAPE '\'`), append(args, likeArg(f.UserName))
	}
	if f.Strategy != "" {
		where, args = append(where, "s.strategy = ?"), append(args, f.Strategy)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "s.created_at >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "s.created_at <= ?"), append(args, f.Until.UnixMilli())
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	// Count and page over sessions alone (its indexes cover user, module and order), joining users only
	// when the filter names them; then read the page's rows.
	from := ` FROM sessions s`
	if f.UserName != "" {
		from = sessionFrom
	}
	var total int64
	countQ, countArgs := `SELECT count(*)`+from+cond, args
	if !f.AllUsers && f.Title == "" && f.UserName == "" && f.Strategy == "" && f.Since.IsZero() && f.Until.IsZero() {
		// Only owner (and module): the trigger-kept counts answer without a scan.
		countQ = `SELECT coalesce(sum(n), 0) FROM session_counts WHERE user_id = ?`
		if f.Module != 0 {
			countQ += ` AND module = ?`
		}
	}
	if err := s.db.QueryRowContext(ctx, countQ, countArgs...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: count sessions: %w", err)
	}
	limit, offset := store.PageBounds(f.Page, f.Size)
	if total == 0 || int64(offset) >= total {
		return []store.Session{}, total, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionColumns+sessionFrom+` WHERE s.id IN (SELECT s.id`+from+cond+
		` ORDER BY s.created_at DESC, s.id DESC LIMIT ? OFFSET ?) ORDER BY s.created_at DESC, s.id DESC`, append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: search sessions: %w", err)
	}
	defer rows.Close()
	out := make([]store.Session, 0, limit)
	for rows.Next() {
		ss, err := scanSession(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, ss)
	}
	return out, total, rows.Err()
}

// --- records ---

// AddRecord appends a record to the user's session; the insert itself checks the owner.
func (s *Store) AddRecord(ctx context.Context, userID int64, r store.Record) (store.Record, error) {
	if r.Status == "" {
		r.Status = store.StatusProcessing
	}
	if r.ContentType == "" {
		r.ContentType = "text"
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	r.UpdatedAt = r.CreatedAt
	res, err := s.db.ExecContext(ctx, insertRecordSelect+` FROM sessions WHERE id = ? AND user_id = ?`,
		append(recordArgs(&r), r.SessionID, userID)...)
	if err != nil {
		return r, fmt.Errorf("store: add record: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return r, store.ErrNotFound
	}
	r.ID, _ = res.LastInsertId()
	return r, nil
}

// insertRecordSelect inserts a record whose session_id comes from a SELECT on sessions (the caller
// appends FROM/WHERE), so the owner check and the insert are one statement.
const insertRecordSelect = `INSERT INTO records(session_id, group_id, model_id, model, author_id, content_type, problem_text,
	answer_text, file_url, status, prompt_tokens, completion_tokens, total_tokens, tokens_estimated, error, created_at, updated_at)
	SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`

func recordArgs(r *store.Record) []any {
	return []any{r.GroupID, r.ModelID, r.Model, r.AuthorID, r.ContentType, r.ProblemText, r.AnswerText, r.FileURL, r.Status,
		r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.TotalTokens, r.Usage.Estimated, r.Error,
		r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli()}
}

// UpdateRecord writes the outcome of the user's record.
func (s *Store) UpdateRecord(ctx context.Context, userID int64, r store.Record) error {
	res, err := s.db.ExecContext(ctx, `UPDATE records SET answer_text = ?, status = ?, model_id = ?, model = ?, prompt_tokens = ?,
		completion_tokens = ?, total_tokens = ?, tokens_estimated = ?, error = ?, updated_at = ?
		WHERE id = ? AND session_id IN (SELECT id FROM sessions WHERE user_id = ?)`,
		r.AnswerText, r.Status, r.ModelID, r.Model, r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.TotalTokens,
		r.Usage.Estimated, r.Error, time.Now().UnixMilli(), r.ID, userID)
	return affected(res, err, "update record")
}

const recordColumns = `id, session_id, group_id, model_id, model, author_id, content_type, problem_text, answer_text, file_url,
	status, prompt_tokens, completion_tokens, total_tokens, tokens_estimated, error, created_at, updated_at`

func scanRecord(row interface{ Scan(...any) error }) (store.Record, error) {
	var r store.Record
	var created, updated int64
	err := row.Scan(&r.ID, &r.SessionID, &r.GroupID, &r.ModelID, &r.Model, &r.AuthorID, &r.ContentType, &r.ProblemText,
		&r.AnswerText, &r.FileURL, &r.Status, &r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.TotalTokens,
		&r.Usage.Estimated, &r.Error, &created, &updated)
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return r, err
}

// ListRecords pages the records of the user's session, newest first.
func (s *Store) ListRecords(ctx context.Context, userID, sessionID int64, page, size int) ([]store.Record, int64, error) {
	var total int64
	err := s.db.QueryRowContext(ctx, `SELECT total_records FROM sessions WHERE id = ? AND user_id = ?`, sessionID, userID).Scan(&total)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, 0, store.ErrNotFound
		}
		return nil, 0, err
	}
	return s.listRecords(ctx, sessionID, total, page, size)
}

// ListRecordsAny pages the records of any user's session (admin).
func (s *Store) ListRecordsAny(ctx context.Context, sessionID int64, page, size int) ([]store.Record, int64, error) {
	var total int64
	err := s.db.QueryRowContext(ctx, `SELECT total_records FROM sessions WHERE id = ?`, sessionID).Scan(&total)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, 0, store.ErrNotFound
		}
		return nil, 0, err
	}
	return s.listRecords(ctx, sessionID, total, page, size)
}

func (s *Store) listRecords(ctx context.Context, sessionID, total int64, page, size int) ([]store.Record, int64, error) {
	limit, offset := store.PageBounds(page, size)
	if total == 0 || int64(offset) >= total {
		return []store.Record{}, total, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM records WHERE session_id = ?
		ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, sessionID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list records: %w", err)
	}
	defer rows.Close()
	out := make([]store.Record, 0, limit)
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// FailProcessingRecords marks records a stopped relay left processing as failed.
func (s *Store) FailProcessingRecords(ctx context.Context) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE records SET status = ?, error = CASE WHEN error = '' THEN 'relay stopped' ELSE error END,
		updated_at = ? WHERE status = ?`, store.StatusFail, time.Now().UnixMilli(), store.StatusProcessing)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// LogConversation queues the session upsert and the record insert as two ops, enqueued together, so the
// writer commits them in order (the record finds its session by the external key).
func (s *Store) LogConversation(c store.Conversation) {
	if c.UserID == 0 || c.ExtID == "" {
		return
	}
	if c.Module == 0 {
		c.Module = store.ModuleChat
	}
	if c.Type == "" {
		c.Type = "chat"
	}
	r := c.Record
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now()
	}
	if r.ContentType == "" {
		r.ContentType = "text"
	}
	if r.Status == "" {
		r.Status = store.StatusSuccess
	}
	if r.AuthorID == 0 {
		r.AuthorID = c.UserID
	}
	abstract := ""
	if r.Status == store.StatusSuccess {
		abstract = store.AbstractFrom(r.AnswerText)
	}
	s.w.enqueue(
		sessionUpsertOp{userID: c.UserID, module: c.Module, typ: c.Type, extID: c.ExtID, title: store.TitleFrom(c.Title),
			abstract: abstract, modelID: r.ModelID, at: r.CreatedAt.UnixMilli()},
		recordInsertOp{r: r, userID: c.UserID, module: c.Module, extID: c.ExtID},
	)
}

// sessionUpsertOp creates the session of an external key on first use; later turns refresh updated_at
// and fill an empty abstract.
type sessionUpsertOp struct {
	userID          int64
	module          int
	typ, extID      string
	title, abstract string
	modelID         int64
	at              int64
}

func (o sessionUpsertOp) stmt() string {
	return `INSERT INTO sessions(user_id, module, type, ext_id, title, abstract, model_id, created_at, updated_at)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)
		ON CONFLICT(user_id, module, ext_id) WHERE ext_id <> '' DO UPDATE SET
		updated_at = max(sessions.updated_at, excluded.updated_at),
		abstract = CASE WHEN sessions.abstract = '' THEN excluded.abstract ELSE sessions.abstract END`
}
func (o sessionUpsertOp) tuple() string { return "" }
func (o sessionUpsertOp) args() []any {
	return []any{o.userID, o.module, o.typ, o.extID, o.title, o.abstract, o.modelID, o.at, o.at, o.userID}
}

// recordInsertOp appends a finished record to the session of an external key.
type recordInsertOp struct {
	r      store.Record
	userID int64
	module int
	extID  string
}

func (o recordInsertOp) stmt() string {
	return insertRecordSelect + ` FROM sessions WHERE user_id = ? AND module = ? AND ext_id = ?`
}
func (o recordInsertOp) tuple() string { return "" }
func (o recordInsertOp) args() []any {
	return append(recordArgs(&o.r), o.userID, o.module, o.extID)
}
