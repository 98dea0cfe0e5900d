package hunyuantest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"
)

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := s.record(r, body)
	rid := requestID(n)
	o := &s.opts

	if r.Method != http.MethodPost {
		writeError(w, http.StatusOK, "UnsupportedOperation", "only POST is served", rid)
		return
	}
	if a := r.Header.Get("X-TC-Action"); a != "ChatCompletions" {
		writeError(w, http.StatusOK, "InvalidAction", "unknown action "+a, rid)
		return
	}
	if v := r.Header.Get("X-TC-Version"); v != "2023-09-01" {
		writeError(w, http.StatusOK, "NoSuchVersion", "unknown version "+v, rid)
		return
	}
	if o.VerifySignature {
		if code, msg := s.verify(r, body); code != "" {
			writeError(w, http.StatusOK, code, msg, rid)
			return
		}
	}
	if o.ErrorCode != "" && (o.ErrorTimes == 0 || n <= o.ErrorTimes) {
		msg := o.ErrorMessage
		if msg == "" {
			msg = "mock error " + o.ErrorCode
		}
		writeError(w, o.ErrorStatus, o.ErrorCode, msg, rid)
		return
	}
	var req chatRequest
	if code, msg := decodeRequest(body, &req); code != "" {
		writeError(w, http.StatusOK, code, msg, rid)
		return
	}
	if len(o.Models) > 0 && !slices.Contains(o.Models, req.Model) {
		writeError(w, http.StatusOK, "InvalidParameterValue.Model", "model "+req.Model+" does not exist", rid)
		return
	}
	if req.Stream {
		s.stream(w, r, rid)
		return
	}
	s.complete(w, rid)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg, rid string) {
	writeJSON(w, status, map[string]any{"Response": map[string]any{
		"Error": map[string]string{"Code": code, "Message": msg}, "RequestId": rid,
	}})
}

// pieces splits s into at most n parts on rune boundaries.
func pieces(s string, n int) []string {
	runes := utf8.RuneCountInString(s)
	if runes == 0 {
		return nil
	}
	if n > runes {
		n = runes
	}
	out := make([]string, 0, n)
	per, extra := runes/n, runes%n
	for i := 0; i < n; i++ {
		k := per
		if i < extra {
			k++
		}
		end := 0
		for j := 0; j < k; j++ {
			_, size := utf8.DecodeRuneInString(s[end:])
			end += size
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

type usage struct {
	PromptTokens, CompletionTokens, TotalTokens int
}

func (s *Server) usage(completion int) usage {
	p := s.opts.PromptTokens
	return usage{PromptTokens: p, CompletionTokens: completion, TotalTokens: p + completion}
}

type toolCall struct {
	Id       string
	Type     string
	Function toolFunction
	Index    int
}

type toolFunction struct {
	Name      string
	Arguments string
}

// frameCount is how many frames a stream answer sends before the final one.
func (s *Server) frameCount() int {
	o := &s.opts
	n := len(pieces(o.Answer, o.Chunks)) + 3*len(o.ToolCalls)
	if o.ReasoningContent != "" {
		n++
	}
	return n
}

func (s *Server) complete(w http.ResponseWriter, rid string) {
	o := &s.opts
	msg := map[string]any{"Role": "assistant", "Content": o.Answer}
	if o.ReasoningContent != "" {
		msg["ReasoningContent"] = o.ReasoningContent
	}
	if len(o.ToolCalls) > 0 {
		calls := make([]toolCall, len(o.ToolCalls))
		for i, c := range o.ToolCalls {
			calls[i] = toolCall{Id: c.ID, Type: "function", Function: toolFunction{c.Name, c.Arguments}, Index: i}
		}
		msg["ToolCalls"] = calls
	}
	writeJSON(w, http.StatusOK, map[string]any{"Response": map[string]any{
		"RequestId": rid, "Note": Note, "Id": rid, "Created": o.Now().Unix(),
		"Choices": []any{map[string]any{"Index": 0, "Message": msg, "FinishReason": o.FinishReason}},
		"Usage":   s.usage(s.frameCount()),
	}})
}

// stream writes the answer as Hunyuan does: data-only SSE frames, no [DONE], close after FinishReason.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, rid string) {
	o := &s.opts
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-TC-RequestId", rid)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush() // headers go out at once, as from the real server, even if the stream then stalls
	}
	created := o.Now().Unix()
	sent := 0
	var buf bytes.Buffer
	send := func(frame map[string]any) bool {
		if sent > 0 && o.ChunkDelay > 0 {
			select {
			case <-time.After(o.ChunkDelay):
			case <-r.Context().Done():
				return false
			}
		}
		frame["Note"], frame["Created"], frame["Id"] = Note, created, rid
		buf.Reset()
		buf.WriteString("data: ")
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(frame) // ends with "\n"
		buf.WriteString("\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	// content sends one non-final frame, unless the configured fault strikes first.
	content := func(delta map[string]any) bool {
		if o.Fault != NoFault && sent == o.FaultAfter {
			s.fault(w, r, send)
			return false
		}
		delta["Role"] = "assistant"
		sent++
		return send(map[string]any{
			"Choices": []any{map[string]any{"Index": 0, "Delta": delta, "FinishReason": ""}},
			"Usage":   s.usage(sent),
		})
	}
	if o.ReasoningContent != "" && !content(map[string]any{"Content": "", "ReasoningContent": o.ReasoningContent}) {
		return
	}
	for _, p := range pieces(o.Answer, o.Chunks) {
		if !content(map[string]any{"Content": p}) {
			return
		}
	}
	for i, c := range o.ToolCalls {
		args := pieces(c.Arguments, 2)
		for len(args) < 2 {
			args = append(args, "")
		}
		frags := []toolFunction{{Name: c.Name}, {Arguments: args[0]}, {Arguments: args[1]}}
		for _, f := range frags {
			tc := []toolCall{{Id: c.ID, Type: "function", Function: f, Index: i}}
			if !content(map[string]any{"Content": "", "ToolCalls": tc}) {
				return
			}
		}
	}
	if o.Fault != NoFault && sent == o.FaultAfter {
		s.fault(w, r, send)
		return
	}
	send(map[string]any{
		"Choices": []any{map[string]any{"Index": 0, "Delta": map[string]any{"Role": "assistant", "Content": ""},
			"FinishReason": o.FinishReason}},
		"Usage": s.usage(sent),
	})
}

func (s *Server) fault(w http.ResponseWriter, r *http.Request, send func(map[string]any) bool) {
	switch s.opts.Fault {
	case Stall:
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
	case Abort:
		panic(http.ErrAbortHandler) // net/http drops the connection without a clean end
	case ErrorFrame:
		msg := "internal error"
		if s.opts.StreamErrorCode == 4001 {
			msg = "model timeout"
		}
		send(map[string]any{"ErrorMsg": map[string]any{"Code": s.opts.StreamErrorCode, "Msg": msg}})
	}
	// CloseEarly: returning ends the response without the final frame.
}
