package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrExists is returned when a row with the same unique name already exists.
var ErrExists = errors.New("already exists")

// User roles.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// User is a person who owns sessions (and relay keys). JWTs name users by ID.
type User struct {
	ID        int64
	Name      string // unique
	Role      string // RoleAdmin or RoleUser
	Avatar    string
	CreatedAt time.Time
}

// IsAdmin reports whether the user may use the data-management routes.
func (u User) IsAdmin() bool { return u.Role == RoleAdmin }

// Session modules (seed session.api: 1 openai chat, 2 Spark document QA; 3 strategy chats).
const (
	ModuleChat     = 1
	ModuleSpark    = 2
	ModuleStrategy = 3
)

// Session is one conversation of a user: ordered records under a title.
type Session struct {
	ID       int64
	UserID   int64  // owner
	UserName string // filled on reads
	Module   int    // ModuleChat, ModuleSpark, ModuleStrategy
	Type     string // chat, spark_dataset_chat, spark_documents_chat (seed); surfaces may use their own
	Title    string
	Abstract string
	ModelID  int64 // id of a configured session model (0: none)
	// DatasetID and DocumentIDs attach a knowledge base / documents (Spark document QA).
	DatasetID   int64
	DocumentIDs []int64
	// Strategy names the strategy of a strategy chat (module 3); Meta is free-form (JSON) for surfaces.
	Strategy string
	Meta     string
	// ExtID is the external conversation key a surface appends to (the OpenAI `user`, a FastGPT
	// chat_id, X-Relay-Session); "" for sessions made through the session API. Unique per user and
	// module.
	ExtID        string
	TotalRecords int64 // filled on reads
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Record statuses (seed session.api).
const (
	StatusProcessing = "processing"
	StatusSuccess    = "finished_success"
	StatusFail       = "finished_fail"
	StatusTimeout    = "finished_timeout"
)

// Record is one turn of a session: the question, the answer and how it ended.
type Record struct {
	ID          int64
	SessionID   int64
	GroupID     int64
	ModelID     int64
	Model       string // model name as asked
	AuthorID    int64  // the user who asked
	ContentType string // text, image, document
	ProblemText string
	AnswerText  string
	FileURL     string
	Status      string
	Usage       Usage
	Error       string // why a failed record failed (no secrets)
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// MaxPageSize bounds every paged list.
const MaxPageSize = 100

// PageBounds normalises a 1-based page and size: page < 1 is 1, size < 1 is 20, size is at most
// MaxPageSize. It returns LIMIT and OFFSET.
func PageBounds(page, size int) (limit, offset int) {
	if page < 1 {
		page = 1
	}
	if size < 1 {
		size = 20
	}
	size = min(size, MaxPageSize)
	if page > 1_000_000 {
		page = 1_000_000
	}
	return size, (page - 1) * size
}

// SessionFilter selects sessions for SearchSessions. Without AllUsers only UserID's sessions match
// (UserID 0 matches none); AllUsers is for the admin data-management search.
type SessionFilter struct {
	UserID   int64
	AllUsers bool
	Module   int    // 0: any
	Title    string // substring of the title (matched literally: % and _ are not wildcards)
	UserName string // substring of the owner's name (AllUsers searches)
	Strategy string // exact strategy name ("" any)
	Since    time.Time
	Until    time.Time // created at or after Since and at or before Until (zero: unbounded)
	Page     int
	Size     int
}

// Conversation is a turn a surface (the OpenAI surface, say) logs into its user's sessions through the
// async writer: the session with ExtID is created on first use (title from the first question,
// abstract from the first answer), and Record is appended to it.
type Conversation struct {
	UserID int64
	Module int
	Type   string
	ExtID  string // must not be empty
	Title  string
	Record Record
}

// Users keeps users. Not on the hot path.
type Users interface {
	// CreateUser inserts a user; ErrExists when the name is taken.
	CreateUser(ctx context.Context, u User) (User, error)
	UserByID(ctx context.Context, id int64) (User, error)
	UserByName(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
}

// Sessions keeps sessions and their records. Every call that reads or changes a session or record
// takes the caller's userID and filters by it in the query: another user's rows answer ErrNotFound.
// The *Any calls are for admins and are the only ones that do not.
type Sessions interface {
	// CreateSession inserts s for s.UserID.
	CreateSession(ctx context.Context, s Session) (Session, error)
	GetSession(ctx context.Context, userID, id int64) (Session, error)
	// GetSessionAny reads any user's session (admin data management).
	GetSessionAny(ctx context.Context, id int64) (Session, error)
	// SessionByExtID finds the user's session with this external key in module.
	SessionByExtID(ctx context.Context, userID int64, module int, extID string) (Session, error)
	// UpdateSession writes s's title, abstract, type, module, model, dataset, documents, strategy and
	// meta, for s.ID owned by userID.
	UpdateSession(ctx context.Context, userID int64, s Session) error
	RenameSession(ctx context.Context, userID, id int64, title string) error
	// FillSession sets the title and abstract of the user's session where they are still empty (an
	// empty argument leaves its field alone): the first turn's question and answer.
	FillSession(ctx context.Context, userID, id int64, title, abstract string) error
	// SetSessionDocuments adds (or with remove, removes) document ids of the user's session.
	SetSessionDocuments(ctx context.Context, userID, id int64, docIDs []int64, remove bool) error
	// DeleteSession deletes the user's session and its records.
	DeleteSession(ctx context.Context, userID, id int64) error
	// SearchSessions lists matching sessions newest first (created, then id) and the total count.
	SearchSessions(ctx context.Context, f SessionFilter) ([]Session, int64, error)

	// AddRecord appends r to the user's session r.SessionID (ErrNotFound when it is not theirs).
	AddRecord(ctx context.Context, userID int64, r Record) (Record, error)
	// UpdateRecord writes r's answer, status, usage, error and model of the user's record r.ID.
	UpdateRecord(ctx context.Context, userID int64, r Record) error
	// ListRecords pages the records of the user's session, newest first (created, then id), and the
	// total count. ErrNotFound when the session is not theirs.
	ListRecords(ctx context.Context, userID, sessionID int64, page, size int) ([]Record, int64, error)
	// ListRecordsAny is ListRecords for any user's session (admin data management).
	ListRecordsAny(ctx context.Context, sessionID int64, page, size int) ([]Record, int64, error)
	// FailProcessingRecords marks records left processing by a stopped relay finished_fail; call it
	// once at start.
	FailProcessingRecords(ctx context.Context) (int, error)

	// LogConversation queues a conversation turn for the async writer (never blocks on the database).
	LogConversation(c Conversation)
}

// TitleFrom makes a session title from a first question: one line, trimmed, at most 64 characters.
func TitleFrom(q string) string { return clip(q, 64) }

// AbstractFrom makes a session abstract from a first answer: one line, trimmed, at most 120 characters.
func AbstractFrom(a string) string { return clip(a, 120) }

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
