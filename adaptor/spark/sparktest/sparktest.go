// Package sparktest is a mock iFlytek Spark WebSocket upstream for tests, built from the wire document
// (shared/wire/spark.md): it verifies the signed handshake URL, reads one request frame, checks it, and
// answers with a scripted series of frames. Knobs cover split answers, error frames, early close,
// delays and function calls; the server reports when a client closed its socket mid-answer.
//
// Typical use:
//
//	srv := sparktest.NewServer(sparktest.Options{Frames: 3, Delay: 10 * time.Millisecond})
//	defer srv.Close()
//	ch := &adaptor.Channel{Kind: "spark", BaseURL: srv.WSURL("/v3.5/chat"), Credentials: map[string]string{
//		"app_id": sparktest.AppID, "api_key": sparktest.APIKey, "api_secret": sparktest.APISecret}}
//	// ... run the relay; then srv.Sessions() holds the request frames, and
//	// <-srv.ClientClosed() fires when a client abandoned an answer.
//
// The signature check is written here independently of package spark on purpose: a mock that shared
// the client's signing code would accept the client's mistakes.
package sparktest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// The credentials the server expects unless Options say otherwise (the wire document's examples).
const (
	AppID     = "5f2a9c1d"
	APIKey    = "addd2272b6d8b7c8abdd79531420ca3b"
	APISecret = "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi"
	SID       = "cht000a11@dx0000000001"
	Answer    = "Eleven is also prime."
)

// Handshake refusal messages, as Spark's gateway words them.
const (
	MsgUnknownKey   = "HMAC signature cannot be verified: fail to retrieve credential"
	MsgBadDate      = "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"
	MsgBadSignature = "HMAC signature does not match"
)

// Usage is payload.usage.text of the final frame.
type Usage struct {
	QuestionTokens   int `json:"question_tokens"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// DefaultUsage is the usage the final frame carries unless Options say otherwise.
var DefaultUsage = Usage{QuestionTokens: 4, PromptTokens: 31, CompletionTokens: 5, TotalTokens: 36}

// FunctionCall is a function call answer; Arguments is a JSON document as a string.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Options script the server. The zero value answers Answer in one frame to the default credentials.
type Options struct {
	// Expected credentials; empty means the package defaults (AppID, APIKey, APISecret).
	AppID, APIKey, APISecret string
	// Now is the server clock the URL's date is checked against (±MaxSkew, default 300 s).
	Now     func() time.Time
	MaxSkew time.Duration
	// Refuse, when set, refuses every handshake with this HTTP status and {"message": RefuseMessage}.
	Refuse        int
	RefuseMessage string
	// Domain, when set, must equal the request's parameter.chat.domain (error frame 10005 otherwise).
	Domain string

	// Answer is the answer text (default Answer), sent in Frames frames (default 1) split between
	// characters; the last piece rides on the final frame (status 2) with the usage.
	Answer string
	Frames int
	// FunctionCall answers with one function-call frame (status 2, empty content) instead of text.
	FunctionCall *FunctionCall
	// Usage replaces DefaultUsage; NoUsage leaves payload.usage out.
	Usage   *Usage
	NoUsage bool
	// SID is header.sid (default SID).
	SID string

	// Delay is the pause before every frame after the first.
	Delay time.Duration
	// Fragment, when > 0, writes each frame as WebSocket fragments of this many bytes (which may split a
	// UTF-8 character across fragments).
	Fragment int

	// ErrorCode, when set, sends an error frame {"header":{"code","message","sid","status":2}} after
	// ErrorAfter answer frames (at most Frames-1), then closes.
	ErrorCode    int
	ErrorMessage string
	ErrorAfter   int
	// CloseBeforeEnd sends every frame but the final one, then closes the socket normally (status
	// 1000), or drops the connection without a close frame when Abrupt is set.
	CloseBeforeEnd bool
	Abrupt         bool
	// Hold sends every frame but the final one and then waits for the client to go away.
	Hold bool
}

// Session is one accepted connection: its path and query and the request frame it sent.
type Session struct {
	Path  string
	Query string
	Frame []byte
}

// Server is the mock; it embeds the httptest server (URL is its http:// address; use WSURL).
type Server struct {
	*httptest.Server
	opts Options

	mu       sync.Mutex
	sessions []Session
	refused  int

	closes  atomic.Int64
	closed  chan struct{}
	quit    chan struct{}
	quitOne sync.Once
}

// NewServer starts a mock Spark upstream.
func NewServer(opts Options) *Server {
	if opts.AppID == "" {
		opts.AppID = AppID
	}
	if opts.APIKey == "" {
		opts.APIKey = APIKey
	}
	if opts.APISecret == "" {
		opts.APISecret = APISecret
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSkew == 0 {
		opts.MaxSkew = 300 * time.Second
	}
	if opts.Answer == "" {
		opts.Answer = Answer
	}
	if opts.Frames < 1 {
		opts.Frames = 1
	}
	if opts.SID == "" {
		opts.SID = SID
	}
	s := &Server{opts: opts, closed: make(chan struct{}, 64), quit: make(chan struct{})}
	s.Server = httptest.NewServer(s)
	return s
}

// WSURL is the server's ws:// URL with path appended (e.g. "/v3.5/chat").
func (s *Server) WSURL(path string) string {
	return "ws" + strings.TrimPrefix(s.Server.URL, "http") + path
}

// Close stops the server, releasing sessions held open by Hold or Delay.
func (s *Server) Close() {
	s.quitOne.Do(func() { close(s.quit) })
	s.Server.Close()
}

// Sessions returns the accepted sessions so far.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Session(nil), s.sessions...)
}

// Refused counts handshakes refused so far.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// ClientClosed receives once for every session whose client closed the socket before the server had
// sent its final frame. Tests select on it with a timeout.
func (s *Server) ClientClosed() <-chan struct{} { return s.closed }

// ClientCloses counts sessions the client closed before the final frame.
func (s *Server) ClientCloses() int { return int(s.closes.Load()) }

func (s *Server) noteClientClose() {
	s.closes.Add(1)
	select {
	case s.closed <- struct{}{}:
	default:
	}
}

// ServeHTTP checks the signed URL, then runs one session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, msg := s.authorize(r); status != 0 {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		b, _ := json.Marshal(map[string]string{"message": msg})
		w.Write(b)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	s.session(r, c)
}

// authorize verifies the handshake query the way the wire document describes: the date within the
// allowed skew, the authorization naming the expected key, and the signature recomputed over the host,
// date and request line of this very request.
func (s *Server) authorize(r *http.Request) (int, string) {
	o := s.opts
	if o.Refuse != 0 {
		return o.Refuse, o.RefuseMessage
	}
	q := r.URL.Query()
	date, err := time.Parse(http.TimeFormat, q.Get("date"))
	if err != nil || !strings.HasSuffix(q.Get("date"), " GMT") {
		return 401, MsgBadDate
	}
	if d := o.Now().Sub(date); d > o.MaxSkew || d < -o.MaxSkew {
		return 401, MsgBadDate
	}
	raw, err := base64.StdEncoding.DecodeString(q.Get("authorization"))
	if err != nil {
		return 401, MsgUnknownKey
	}
	fields := map[string]string{}
	for _, part := range strings.Split(string(raw), ", ") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return 401, MsgUnknownKey
		}
		fields[k] = v[1 : len(v)-1]
	}
	key, ok := fields["api_key"]
	if !ok {
		key = fields["hmac username"] // one-api's wording, reportedly accepted too
	}
	if key != o.APIKey {
		return 401, MsgUnknownKey
	}
	if fields["algorithm"] != "hmac-sha256" || fields["headers"] != "host date request-line" || q.Get("host") != r.Host {
		return 403, MsgBadSignature
	}
	m := hmac.New(sha256.New, []byte(o.APISecret))
	m.Write([]byte("host: " + r.Host + "\ndate: " + q.Get("date") + "\nGET " + r.URL.EscapedPath() + " HTTP/1.1"))
	got, err := base64.StdEncoding.DecodeString(fields["signature"])
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return 403, MsgBadSignature
	}
	return 0, ""
}

// session reads the request frame, checks it and plays the script.
func (s *Server) session(r *http.Request, c *websocket.Conn) {
	o := s.opts
	// Spark drops a connection that sends nothing for 60 s after the handshake.
	rctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	_, req, err := c.Read(rctx)
	cancel()
	if err != nil {
		s.noteClientClose()
		return
	}
	s.mu.Lock()
	s.sessions = append(s.sessions, Session{Path: r.URL.Path, Query: r.URL.RawQuery, Frame: req})
	s.mu.Unlock()

	// From here on a background read notices the client going away (and answers its close frame).
	live := c.CloseRead(context.Background())

	if code, msg := s.check(req); code != 0 {
		if s.send(live, c, s.errorFrame(code, msg), false) {
			c.Close(websocket.StatusNormalClosure, "")
		}
		return
	}

	frames := s.answerFrames()
	n := len(frames)
	switch {
	case o.ErrorCode != 0:
		n = min(o.ErrorAfter, len(frames)-1)
	case o.CloseBeforeEnd, o.Hold:
		n = len(frames) - 1
	}
	for i := range n {
		if !s.send(live, c, frames[i], i > 0) {
			return
		}
	}
	switch {
	case o.ErrorCode != 0:
		msg := o.ErrorMessage
		if msg == "" {
			msg = codeMessages[o.ErrorCode]
		}
		if !s.send(live, c, s.errorFrame(o.ErrorCode, msg), n > 0) {
			return
		}
	case o.CloseBeforeEnd:
		if o.Abrupt {
			c.CloseNow()
		} else {
			c.Close(websocket.StatusNormalClosure, "")
		}
		return
	case o.Hold:
		t := time.NewTimer(time.Minute) // a bound, so a forgotten client cannot pin the handler
		defer t.Stop()
		select {
		case <-live.Done():
			s.noteClientClose()
		case <-s.quit:
		case <-t.C:
		}
		return
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// send waits the configured delay (when delay) and writes one frame; it reports false, after noting
// it, when the client went away first.
func (s *Server) send(live context.Context, c *websocket.Conn, frame []byte, delay bool) bool {
	if delay && s.opts.Delay > 0 {
		t := time.NewTimer(s.opts.Delay)
		defer t.Stop()
		select {
		case <-live.Done():
			s.noteClientClose()
			return false
		case <-s.quit:
			return false
		case <-t.C:
		}
	}
	if live.Err() != nil {
		s.noteClientClose()
		return false
	}
	if err := s.write(live, c, frame); err != nil {
		// A write fails because the client went away, even when the background read has not noticed
		// it yet (a close racing the write).
		s.noteClientClose()
		return false
	}
	return true
}

func (s *Server) write(ctx context.Context, c *websocket.Conn, frame []byte) error {
	if s.opts.Fragment <= 0 {
		return c.Write(ctx, websocket.MessageText, frame)
	}
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		return err
	}
	for len(frame) > 0 {
		n := min(s.opts.Fragment, len(frame))
		if _, err := w.Write(frame[:n]); err != nil { // each Write is one WebSocket frame
			return err
		}
		frame = frame[n:]
	}
	return w.Close()
}

// check validates a request frame against the documented schema and ranges, answering with the error
// code Spark uses for each kind of mistake (0 when the frame is fine).
func (s *Server) check(raw []byte) (int, string) {
	var f struct {
		Header struct {
			AppID string `json:"app_id"`
			UID   string `json:"uid"`
		} `json:"header"`
		Parameter struct {
			Chat struct {
				Domain      string   `json:"domain"`
				Temperature *float64 `json:"temperature"`
				MaxTokens   *int     `json:"max_tokens"`
				TopK        *int     `json:"top_k"`
			} `json:"chat"`
		} `json:"parameter"`
		Payload struct {
			Message struct {
				Text []map[string]any `json:"text"`
			} `json:"message"`
		} `json:"payload"`
	}
	if !json.Valid(raw) {
		return 10003, codeMessages[10003]
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return 10004, "schema error: " + err.Error()
	}
	// The document has no code for an APPID that does not belong to the key; 10016 (appid
	// authorization error) is the nearest.
	if f.Header.AppID != s.opts.AppID {
		return 10016, codeMessages[10016]
	}
	if utf8.RuneCountInString(f.Header.UID) > 32 {
		return 10005, "invalid parameter value: header.uid longer than 32"
	}
	c := f.Parameter.Chat
	switch {
	case c.Domain == "":
		return 10004, "schema error: parameter.chat.domain is required"
	case s.opts.Domain != "" && c.Domain != s.opts.Domain:
		return 10005, "invalid parameter value: domain " + c.Domain + " does not match this URL"
	case c.Temperature != nil && (*c.Temperature <= 0 || *c.Temperature > 1):
		return 10005, "invalid parameter value: temperature"
	case c.MaxTokens != nil && (*c.MaxTokens < 1 || *c.MaxTokens > 8192):
		return 10005, "invalid parameter value: max_tokens"
	case c.TopK != nil && (*c.TopK < 1 || *c.TopK > 6):
		return 10005, "invalid parameter value: top_k"
	}
	if len(f.Payload.Message.Text) == 0 {
		return 10004, "schema error: payload.message.text is required"
	}
	for i, m := range f.Payload.Message.Text {
		role, _ := m["role"].(string)
		content, ok := m["content"].(string)
		if !ok || content == "" {
			return 10004, "schema error: payload.message.text[" + strconv.Itoa(i) + "].content must be a non-empty string"
		}
		switch {
		case role == "system" && i == 0, role == "user", role == "assistant":
		default:
			return 10004, "schema error: payload.message.text[" + strconv.Itoa(i) + "].role " + strconv.Quote(role)
		}
	}
	return 0, ""
}

// Frame shapes of the wire document, §4.
type header struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	SID     string `json:"sid"`
	Status  int    `json:"status"`
}

type text struct {
	Content      string        `json:"content"`
	Role         string        `json:"role"`
	Index        int           `json:"index"`
	ContentType  string        `json:"content_type,omitempty"`
	FunctionCall *FunctionCall `json:"function_call,omitempty"`
}

type choices struct {
	Status int    `json:"status"`
	Seq    int    `json:"seq"`
	Text   []text `json:"text"`
}

type usageText struct {
	Text Usage `json:"text"`
}

type payload struct {
	Choices choices    `json:"choices"`
	Usage   *usageText `json:"usage,omitempty"`
}

type frame struct {
	Header  header   `json:"header"`
	Payload *payload `json:"payload,omitempty"`
}

// Pieces splits answer into n pieces between characters, as the server sends them: sizes differ by at
// most one character, earlier pieces being the longer ones.
func Pieces(answer string, n int) []string {
	if n < 1 {
		n = 1
	}
	runes := utf8.RuneCountInString(answer)
	out := make([]string, 0, n)
	start := 0
	for i := range n {
		size := runes / n
		if i < runes%n {
			size++
		}
		end := start
		for k := 0; k < size; k++ {
			_, w := utf8.DecodeRuneInString(answer[end:])
			end += w
		}
		out = append(out, answer[start:end])
		start = end
	}
	return out
}

// answerFrames renders the scripted answer; the last frame has status 2 and the usage.
func (s *Server) answerFrames() [][]byte {
	o := s.opts
	var texts []text
	if o.FunctionCall != nil {
		texts = []text{{Role: "assistant", ContentType: "text", FunctionCall: o.FunctionCall}}
	} else {
		for _, p := range Pieces(o.Answer, o.Frames) {
			texts = append(texts, text{Content: p, Role: "assistant"})
		}
	}
	out := make([][]byte, len(texts))
	for i, t := range texts {
		status := 1
		switch {
		case i == len(texts)-1:
			status = 2
		case i == 0:
			status = 0
		}
		f := frame{
			Header:  header{Message: "Success", SID: o.SID, Status: status},
			Payload: &payload{Choices: choices{Status: status, Seq: i, Text: []text{t}}},
		}
		if status == 2 && !o.NoUsage {
			u := DefaultUsage
			if o.Usage != nil {
				u = *o.Usage
			}
			f.Payload.Usage = &usageText{u}
		}
		out[i] = marshal(f)
	}
	return out
}

func (s *Server) errorFrame(code int, msg string) []byte {
	return marshal(frame{Header: header{Code: code, Message: msg, SID: s.opts.SID, Status: 2}})
}

// marshal encodes without HTML escaping, as Spark sends text.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// codeMessages are the meanings the wire document gives for Spark's error codes.
var codeMessages = map[int]string{
	10003: "malformed message",
	10004: "schema error in user data",
	10005: "invalid parameter value",
	10006: "same user already connected",
	10007: "flow limited: previous question still being answered",
	10008: "service capacity insufficient",
	10013: "input content audit failed",
	10014: "output content audit failed",
	10015: "appid blacklisted",
	10016: "appid authorization error",
	10019: "conversation tends toward violating content",
	10021: "input audit failed",
	10110: "service busy, retry later",
	10907: "token count exceeds limit",
	11200: "authorization error: no licence or volume exceeded",
	11201: "daily quota exceeded",
	11202: "per-second rate limit exceeded",
	11203: "concurrency limit exceeded",
}
