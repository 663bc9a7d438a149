package githubtest

import (
	"net/http"
	"strconv"
	"time"
)

// Fault makes the stand-in misbehave on matching requests, as GitHub
// sometimes does.
type Fault struct {
	// Method matches the request method; empty matches any.
	Method string
	// Path matches the URL path exactly, e.g. "/user/teams"; empty
	// matches every path.
	Path string
	// Page matches the page query parameter (absent counts as page 1);
	// zero matches any page.
	Page int
	// Delay holds the answer back this long, or until the client gives
	// up. Without Status or Body the request is then served normally.
	Delay time.Duration
	// Status, when non-zero, answers with this status and GitHub's error
	// JSON.
	Status int
	// Body, when non-empty, answers 200 with this raw body as
	// application/json (e.g. malformed JSON).
	Body string
	// Times is how many matching requests the fault applies to; zero
	// means all of them until ClearFaults.
	Times int
}

// InjectFault adds a fault. Faults are tried in the order added; the first
// matching one applies.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.ext()
	x.faults = append(x.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ext().faults = nil
}

// fault applies the first fault matching r and reports whether it
// answered the request.
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	page := 1
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
		page = v
	}
	s.mu.Lock()
	x := s.ext()
	var f Fault
	found := false
	for i, c := range x.faults {
		if (c.Method == "" || c.Method == r.Method) && (c.Path == "" || c.Path == r.URL.Path) && (c.Page == 0 || c.Page == page) {
			f, found = *c, true
			if c.Times > 0 {
				c.Times--
				if c.Times == 0 {
					x.faults = append(x.faults[:i:i], x.faults[i+1:]...)
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if !found {
		return false
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.Status != 0:
		writeError(w, f.Status, http.StatusText(f.Status))
		return true
	case f.Body != "":
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(f.Body))
		return true
	}
	return false
}
