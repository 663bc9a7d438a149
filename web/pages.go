package web

import (
	"embed"
	"errors"
	"html/template"
	"net/http"
	"regexp"
	"time"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

//go:embed templates
var templateFS embed.FS

// pages renders the server's HTML with html/template. The pages need no
// JavaScript.
type pages struct {
	t       map[string]*template.Template
	style   []byte
	records bool // the recordings pages exist
}

func newPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range []string{"error", "signin", "home", "device", "admin", "admin_certs", "admin_audit", "admin_identities", "recordings", "recording"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p.t[name] = t
	}
	var err error
	p.style, err = templateFS.ReadFile("templates/style.css")
	return p, err
}

// sessionView is what templates see of a session.
type sessionView struct {
	Login    string
	ID       int64 // GitHub ID; 0 for OIDC
	Provider string
	Teams    []string
	CSRF     string
	Expires  string
	Admin    bool // show the admin link
	Records  bool // show the recordings link
}

type pageData struct {
	Title    string
	Session  *session
	Error    string
	Message  string
	Org      string
	BaseURL  string
	Access   *Access
	TTL      string
	NoAccess string
	SSH      SSHConfig
	OIDC     []string // names of the OIDC providers to offer
	Admin    bool     // the signed-in person is an admin (links only)
	// Unpinned says why the person's GitHub login matches no `users:`
	// entry of the policy (it is pinned to another account); "" if it does.
	Unpinned string
}

type view struct {
	pageData
	Session *sessionView
}

func (p *pages) render(w http.ResponseWriter, status int, name string, d pageData) {
	v := view{pageData: d}
	if d.Session != nil {
		u := d.Session.user
		v.Session = &sessionView{Login: u.display(), ID: u.identity.ID, Provider: u.provider, Teams: u.identity.Teams,
			CSRF: d.Session.csrf, Expires: d.Session.expires.UTC().Format(time.RFC1123), Admin: d.Admin, Records: d.Session.kind == "browser" && p.records}
	}
	if v.Title == "" {
		v.Title = map[string]string{"signin": "Sign in", "home": "Your access", "device": "Sign in a terminal"}[name]
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	p.t[name].ExecuteTemplate(w, name+".html", v) //nolint:errcheck // the client went away
}

func (p *pages) error(w http.ResponseWriter, status int, title, msg string) {
	p.render(w, status, "error", pageData{Title: title, Error: msg})
}

func (s *Server) style(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(s.pages.style) //nolint:errcheck // the client went away
}

// favicon answers the icon every browser asks for with nothing, so that
// each page load does not log a 404 in the browser's console.
func favicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.browserSession(r)
	if !ok {
		var names []string
		for _, p := range s.o.OIDC {
			names = append(names, p.Name)
		}
		s.pages.render(w, http.StatusOK, "signin", pageData{Org: s.o.Policy.Policy().GitHub.Org, BaseURL: s.base.String(), OIDC: names})
		return
	}
	s.renderHome(w, r, sess, http.StatusOK, "")
}

func (s *Server) renderHome(w http.ResponseWriter, r *http.Request, sess *session, status int, errMsg string) {
	p := s.o.Policy.Policy()
	id := sess.user.identity
	if s.o.Directory != nil && id.ID != 0 {
		if m, err := s.o.Directory.Lookup(id.ID); err == nil && m.Member {
			id.Teams = m.Teams
		}
	}
	d := pageData{Session: sess, Error: errMsg, BaseURL: s.base.String(), SSH: s.sshConfig(""), Admin: s.isAdminNow(sess)}
	st, err := standing.Check(r.Context(), s.o.Standing, sess.user.actor(), id, standing.SourceSignIn)
	switch {
	case errors.Is(err, store.ErrSuspended):
		d.NoAccess = "Your access is suspended: " + suspendedReason(err) + "."
	case err != nil:
		s.log.Error("home: standing", "who", sess.user.actor(), "err", err)
		d.NoAccess = "Sallyport could not check your account just now; reload the page in a minute."
	default:
		d.Unpinned = st.Unpinned
		if t, ok := termsOf(p.Grant(st.Identity), p.Defaults.MaxTTL); ok {
			d.Access = &t.access
			d.TTL = policy.FormatDuration(t.access.TTL)
		} else {
			d.NoAccess = "The policy grants you nothing at the moment: " + noGrantReason(p, st.Identity) + ". Ask the infrastructure team if you need access."
		}
	}
	s.pages.render(w, status, "home", d)
}

var identityFileRE = regexp.MustCompile(`^[A-Za-z0-9_./~-]{1,200}$`)
