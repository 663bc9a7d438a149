package web

import (
	"embed"
	"html/template"
	"net/http"
	"regexp"
	"time"

	"github.com/sallyport/sallyport/policy"
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
	for _, name := range []string{"error", "signin", "home", "device", "admin", "admin_certs", "admin_audit", "recordings", "recording"} {
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
	if t, ok := termsOf(p.Grant(id), p.Defaults.MaxTTL); ok {
		d.Access = &t.access
		d.TTL = policy.FormatDuration(t.access.TTL)
	} else {
		d.NoAccess = "The policy grants you nothing at the moment: " + noGrantReason(p, id) + ". Ask the infrastructure team if you need access."
	}
	s.pages.render(w, status, "home", d)
}

var identityFileRE = regexp.MustCompile(`^[A-Za-z0-9_./~-]{1,200}$`)
