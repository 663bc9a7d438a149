package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sallyport/sallyport/audit"
)

// An identity's standing is what is known about it apart from the policy:
// whether an admin suspended it, and, for a GitHub user, whether the login
// GitHub reports for them now is the one pinned to their numeric user ID.
//
// A suspension stops an identity whatever keys or tokens it holds: no
// certificate is recorded for it (RecordIssued refuses) and the bastion
// refuses it, until an admin lifts it. Revocations name keys and serials;
// suspensions name the person or workload.
//
// A GitHub login is pinned to the numeric user ID it is first seen with
// (at sign-in, by the bastion, or in the organisation's member list).
// Logins can be renamed and the freed name registered by someone else;
// the pin is how the policy's `users:` entries, which name logins, keep
// meaning the account they meant. Only an admin moves or removes a pin.

// Audit event types of identity standing. The audit package names the
// types of certificates and sessions; these are the store's own records.
const (
	// AuditTypeSuspend: an identity was suspended.
	AuditTypeSuspend = "suspend"
	// AuditTypeLift: a suspension was lifted.
	AuditTypeLift = "lift"
	// AuditTypeLoginPin: a GitHub login was pinned to a numeric user ID
	// on first sight, re-pinned or released by an admin.
	AuditTypeLoginPin = "login.pin"
)

// ErrSuspended means the identity is suspended. Errors carrying it are
// *SuspendedError.
var ErrSuspended = errors.New("suspended")

// ErrSelfSuspension means an actor asked to suspend itself, which would
// lock it out of whatever it could lift the suspension with.
var ErrSelfSuspension = errors.New("an identity cannot suspend itself")

// Suspension stops an identity until an admin lifts it.
type Suspension struct {
	// Subject is what is suspended, as SuspensionSubject makes it:
	// "github:ID" for a GitHub user, "ci:OWNER/NAME" for every GitHub
	// Actions workload of a repository, or another recorded identity
	// such as "oidc:ISSUER#SUBJECT".
	Subject string
	// Reason says why, in plain words; required.
	Reason string
	// Actor is who suspended, e.g. "github:12345"; required.
	Actor string
	// Time is when; zero means the store's clock.
	Time time.Time
}

// Describe names the subject for people.
func (sp Suspension) Describe() string { return DescribeSubject(sp.Subject) }

// DescribeSubject names a suspension subject for people: "github:1234",
// or "every GitHub Actions workload of owner/name".
func DescribeSubject(subject string) string {
	if repo, ok := strings.CutPrefix(subject, CISubjectPrefix); ok {
		return "every GitHub Actions workload of " + repo
	}
	return subject
}

// SuspendedError refuses a suspended identity.
type SuspendedError struct {
	// Identity is the identity refused, as recorded with certificates.
	Identity string
	Suspension
}

func (e *SuspendedError) Error() string {
	who := e.Identity
	if e.Subject != e.Identity {
		who = fmt.Sprintf("%s (%s)", e.Identity, e.Describe())
	}
	return fmt.Sprintf("%s is suspended since %s by %s%s; an admin must lift the suspension",
		who, e.Time.UTC().Format(time.RFC3339), e.Actor, because(e.Reason))
}

func (e *SuspendedError) Unwrap() error { return ErrSuspended }

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", reason)
}

// Prefixes of recorded identities and of suspension subjects.
const (
	githubPrefix     = "github:"
	ciIdentityPrefix = "github-actions:" // policy.CIIdentityPrefix
	oidcPrefix       = "oidc:"
)

// CISubjectPrefix starts the suspension subject of a repository's GitHub
// Actions workloads, "ci:OWNER/NAME". No certificate is recorded under
// it: each workload has its own "github-actions:" identity.
const CISubjectPrefix = "ci:"

// SuspensionSubject returns the suspension subject that covers the
// recorded identity: the identity itself, except for a GitHub Actions
// workload ("github-actions:..." as policy.CIClaims.IdentityString makes
// it), which is covered by "ci:OWNER/NAME", its repository in lower case.
// Whoever controls a repository's workflows chooses their ref,
// environment and workflow name, so no narrower suspension would hold.
func SuspensionSubject(identity string) string {
	if rest, ok := strings.CutPrefix(identity, ciIdentityPrefix); ok {
		if v, err := url.ParseQuery(rest); err == nil {
			if repo := v.Get("repository"); repoRE.MatchString(repo) {
				return CISubjectPrefix + strings.ToLower(repo)
			}
		}
	}
	return identity
}

var (
	repoRE    = regexp.MustCompile(`^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$`)
	printable = regexp.MustCompile(`^[!-~]{1,300}$`)
)

// ParseSuspensionSubject reads what an admin names to suspend: a numeric
// GitHub user ID or "github:ID" (never a login, which can be renamed),
// "ci:OWNER/NAME" or a recorded CI identity (which stands for its
// repository), or an "oidc:" identity. It returns the canonical subject.
func ParseSuspensionSubject(s string) (string, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(strings.TrimPrefix(s, githubPrefix), 10, 64); err == nil && n > 0 {
		if strings.HasPrefix(s, githubPrefix) || !strings.Contains(s, ":") {
			return githubPrefix + strconv.FormatInt(n, 10), nil
		}
	}
	switch {
	case strings.HasPrefix(s, CISubjectPrefix):
		repo := s[len(CISubjectPrefix):]
		if !repoRE.MatchString(repo) {
			return "", fmt.Errorf("%.80q: a repository is OWNER/NAME", s)
		}
		return CISubjectPrefix + strings.ToLower(repo), nil
	case strings.HasPrefix(s, ciIdentityPrefix):
		if sub := SuspensionSubject(s); sub != s {
			return sub, nil
		}
		return "", fmt.Errorf("%.80q names no repository", s)
	case strings.HasPrefix(s, oidcPrefix) && printable.MatchString(s):
		return s, nil
	}
	return "", fmt.Errorf("%.80q cannot be suspended: give a numeric GitHub user ID or github:ID (never a login, which can be renamed), ci:OWNER/NAME, or an oidc: identity", s)
}

// Suspend durably records a suspension and its "suspend" audit event in
// one transaction, and returns the suspension in force and whether it is
// the one given. Suspending what is already suspended is not an error
// (the first suspension's reason and time are kept and returned) but is
// audited.
//
// An actor cannot suspend itself (ErrSelfSuspension), and a suspended
// actor cannot suspend anyone (a *SuspendedError naming the actor),
// checked in the same transaction: so two admins suspending each other
// at once do not both end up suspended, and whoever suspends on the web
// is left able to lift it.
func (s *SQLite) Suspend(ctx context.Context, sp Suspension) (Suspension, bool, error) {
	fail := func(err error) (Suspension, bool, error) {
		return Suspension{}, false, fmt.Errorf("store: suspend %s: %w", sp.Subject, err)
	}
	if sub, err := ParseSuspensionSubject(sp.Subject); err != nil {
		return fail(err)
	} else if sub != sp.Subject {
		return fail(fmt.Errorf("not a canonical subject (%s)", sub))
	}
	switch {
	case sp.Actor == "":
		return fail(errors.New("no actor"))
	case strings.TrimSpace(sp.Reason) == "":
		return fail(errors.New("no reason"))
	case SuspensionSubject(sp.Actor) == sp.Subject:
		return fail(ErrSelfSuspension)
	}
	if sp.Time.IsZero() {
		sp.Time = s.now()
	}
	sp.Time = sp.Time.UTC()
	var inForce Suspension
	var fresh bool
	err := s.update(ctx, func(tx *txn) error {
		if own, found, err := tx.suspension(SuspensionSubject(sp.Actor)); err != nil {
			return err
		} else if found {
			return &SuspendedError{Identity: sp.Actor, Suspension: own}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO suspensions (subject, reason, actor, suspended_at) VALUES (?, ?, ?, ?)
	ON CONFLICT (subject) DO NOTHING`, sp.Subject, sp.Reason, sp.Actor, formatTime(sp.Time))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		cur, found, err := tx.suspension(sp.Subject)
		if err != nil {
			return err
		}
		if !found {
			return errors.New("suspension vanished")
		}
		inForce, fresh = cur, n > 0
		fields := map[string]string{}
		if n == 0 {
			fields["already_suspended"] = "true"
			fields["suspended_at"] = formatTime(cur.Time)
			fields["suspended_by"] = cur.Actor
		}
		return tx.audit(audit.Event{Time: sp.Time, Type: AuditTypeSuspend, Actor: sp.Actor, Subject: sp.Subject,
			Outcome: audit.OutcomeOK, Reason: sp.Reason, Fields: fields})
	})
	if err != nil {
		return fail(err)
	}
	return inForce, fresh, nil
}

// Lift ends the suspension of subject, recording its "lift" audit event
// (by actor, with reason) in the same transaction, and returns the
// suspension lifted. A subject that is not suspended fails with
// ErrNotFound.
func (s *SQLite) Lift(ctx context.Context, subject, actor, reason string) (Suspension, error) {
	fail := func(err error) (Suspension, error) {
		return Suspension{}, fmt.Errorf("store: lift suspension of %s: %w", subject, err)
	}
	if actor == "" {
		return fail(errors.New("no actor"))
	}
	var lifted Suspension
	err := s.update(ctx, func(tx *txn) error {
		cur, found, err := tx.suspension(subject)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("not suspended: %w", ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM suspensions WHERE subject = ?`, subject); err != nil {
			return err
		}
		lifted = cur
		return tx.audit(audit.Event{Type: AuditTypeLift, Actor: actor, Subject: subject, Outcome: audit.OutcomeOK, Reason: reason,
			Fields: map[string]string{"suspended_at": formatTime(cur.Time), "suspended_by": cur.Actor, "suspension_reason": cur.Reason}})
	})
	if err != nil {
		return fail(err)
	}
	return lifted, nil
}

// Suspensions lists the suspensions in force, oldest first.
func (s *SQLite) Suspensions(ctx context.Context) ([]Suspension, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT subject, reason, actor, suspended_at FROM suspensions ORDER BY suspended_at, subject`)
	if err != nil {
		return nil, fmt.Errorf("store: suspensions: %w", err)
	}
	defer rows.Close()
	var out []Suspension
	for rows.Next() {
		sp, err := scanSuspension(rows)
		if err != nil {
			return nil, fmt.Errorf("store: suspensions: %w", err)
		}
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: suspensions: %w", err)
	}
	return out, nil
}

// suspension returns the suspension of subject, if there is one.
func (tx *txn) suspension(subject string) (Suspension, bool, error) {
	sp, err := scanSuspension(tx.QueryRowContext(tx.ctx, `SELECT subject, reason, actor, suspended_at FROM suspensions WHERE subject = ?`, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return Suspension{}, false, nil
	}
	return sp, err == nil, err
}

// scanSuspension scans a row of subject, reason, actor and suspended_at.
func scanSuspension(row interface{ Scan(...any) error }) (Suspension, error) {
	var sp Suspension
	var at string
	if err := row.Scan(&sp.Subject, &sp.Reason, &sp.Actor, &at); err != nil {
		return Suspension{}, err
	}
	var err error
	sp.Time, err = parseTime(at)
	return sp, err
}

// LoginPin binds a GitHub login to the numeric user ID it was first seen
// with (or an admin gave it).
type LoginPin struct {
	// Login is the login in lower case: GitHub logins ignore case.
	Login string
	// GitHubID is the numeric user ID the login belongs to.
	GitHubID int64
	// SeenAs is the login as GitHub spelled it when it was pinned.
	SeenAs string
	// Source is where it was first seen, such as "web sign-in", "bastion"
	// or "directory"; "admin" when an admin re-pinned it.
	Source string
	// Time is when it was pinned.
	Time time.Time
	// Actor is the admin who re-pinned it; "" when pinned on first sight.
	Actor string
	// Reason is the admin's reason; "" when pinned on first sight.
	Reason string
}

// SeenLogin is a GitHub login as GitHub reported it for a numeric user ID.
type SeenLogin struct {
	Login    string
	GitHubID int64
}

// PinSourceAdmin is the Source of a pin an admin set.
const PinSourceAdmin = "admin"

var loginRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)

// NormalizeLogin returns the key a GitHub login is pinned under: the
// login in lower case. A login GitHub could not have given fails.
func NormalizeLogin(login string) (string, error) {
	if !loginRE.MatchString(login) {
		return "", fmt.Errorf("%.60q is not a GitHub login", login)
	}
	return strings.ToLower(login), nil
}

// PinLogins pins each login not pinned yet to the ID it is seen with,
// in one transaction, recording where (source) and a "login.pin" audit
// event for each new pin. It returns the pin in force for each of seen,
// in the same order: a pin whose GitHubID differs from the one seen is a
// login now held by another account than the one it was first seen with.
func (s *SQLite) PinLogins(ctx context.Context, source string, seen []SeenLogin) ([]LoginPin, error) {
	pins, _, err := s.pinLogins(ctx, source, seen)
	return pins, err
}

// pinLogins is PinLogins, also reporting which pins it made.
func (s *SQLite) pinLogins(ctx context.Context, source string, seen []SeenLogin) ([]LoginPin, []bool, error) {
	keys := make([]string, len(seen))
	for i, l := range seen {
		k, err := NormalizeLogin(l.Login)
		if err != nil {
			return nil, nil, fmt.Errorf("store: pin logins: %w", err)
		}
		if l.GitHubID <= 0 {
			return nil, nil, fmt.Errorf("store: pin login %s: GitHub user ID %d is not positive", l.Login, l.GitHubID)
		}
		keys[i] = k
	}
	if source == "" {
		return nil, nil, errors.New("store: pin logins: no source")
	}
	var pins []LoginPin
	var fresh []bool
	err := s.update(ctx, func(tx *txn) error {
		pins, fresh = make([]LoginPin, 0, len(seen)), make([]bool, 0, len(seen))
		now := s.now().UTC()
		for i, l := range seen {
			res, err := tx.ExecContext(ctx, `INSERT INTO login_pins (login, github_id, seen_as, source, pinned_at) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (login) DO NOTHING`, keys[i], l.GitHubID, l.Login, source, formatTime(now))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			p, found, err := tx.pin(keys[i])
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("pin of %s vanished", keys[i])
			}
			pins, fresh = append(pins, p), append(fresh, n > 0)
			if n > 0 {
				if err := tx.audit(audit.Event{Time: now, Type: AuditTypeLoginPin, Actor: githubPrefix + strconv.FormatInt(l.GitHubID, 10),
					Subject: keys[i], Outcome: audit.OutcomeOK, Reason: "first seen",
					Fields: map[string]string{"github_id": strconv.FormatInt(l.GitHubID, 10), "seen_as": l.Login, "source": source}}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: pin logins: %w", err)
	}
	return pins, fresh, nil
}

// Standing is what the store knows of an identity apart from the policy.
type Standing struct {
	// Suspension is the suspension covering the identity; nil when none.
	Suspension *Suspension
	// Pin is the pin of the login asked about; nil when none was asked.
	Pin *LoginPin
	// NewPin is true when this call pinned the login.
	NewPin bool
}

// Standing reads whether identity (as recorded with certificates) is
// suspended and, for a GitHub user's login (login "" for none), the pin
// of the login, pinning it to githubID (seen at source) first if it has
// none. It answers from one read unless it pins.
func (s *SQLite) Standing(ctx context.Context, identity, login string, githubID int64, source string) (Standing, error) {
	fail := func(err error) (Standing, error) {
		return Standing{}, fmt.Errorf("store: standing of %s: %w", identity, err)
	}
	var key string
	if login != "" {
		var err error
		if key, err = NormalizeLogin(login); err != nil {
			return fail(err)
		}
	}
	subject := SuspensionSubject(identity)
	var (
		spReason, spActor, spAt                     sql.NullString
		pinID                                       sql.NullInt64
		pinSeen, pinSource, pinAt, pinActor, pinWhy sql.NullString
	)
	stmt, err := s.standingStmt(ctx)
	if err != nil {
		return fail(err)
	}
	err = stmt.QueryRowContext(ctx, subject, key).Scan(
		&spReason, &spActor, &spAt, &pinID, &pinSeen, &pinSource, &pinAt, &pinActor, &pinWhy)
	if err != nil {
		return fail(err)
	}
	var st Standing
	if spAt.Valid {
		sp := Suspension{Subject: subject, Reason: spReason.String, Actor: spActor.String}
		if sp.Time, err = parseTime(spAt.String); err != nil {
			return fail(err)
		}
		st.Suspension = &sp
	}
	switch {
	case key == "":
	case pinID.Valid:
		p := LoginPin{Login: key, GitHubID: pinID.Int64, SeenAs: pinSeen.String, Source: pinSource.String,
			Actor: pinActor.String, Reason: pinWhy.String}
		if p.Time, err = parseTime(pinAt.String); err != nil {
			return fail(err)
		}
		st.Pin = &p
	default:
		pins, fresh, err := s.pinLogins(ctx, source, []SeenLogin{{Login: login, GitHubID: githubID}})
		if err != nil {
			return fail(err)
		}
		st.Pin, st.NewPin = &pins[0], fresh[0]
	}
	return st, nil
}

// standingStmt returns the statement Standing reads with, preparing it
// on first use.
func (s *SQLite) standingStmt(ctx context.Context) (*sql.Stmt, error) {
	if st := s.standing.Load(); st != nil {
		return st, nil
	}
	s.standingMu.Lock()
	defer s.standingMu.Unlock()
	if st := s.standing.Load(); st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, `SELECT s.reason, s.actor, s.suspended_at,
	p.github_id, p.seen_as, p.source, p.pinned_at, p.actor, p.reason
FROM (SELECT ? AS subject, ? AS login) q
LEFT JOIN suspensions s ON s.subject = q.subject
LEFT JOIN login_pins p ON p.login = q.login`)
	if err != nil {
		return nil, err
	}
	s.standing.Store(st)
	return st, nil
}

// Repin pins login to githubID on an admin's word, replacing any pin,
// and records a "login.pin" audit event by actor with reason in the same
// transaction. It returns the pin replaced, if any. It is the way out
// when a login legitimately changed hands (the old account was deleted
// or renamed and the policy's `users:` entry means the new holder).
func (s *SQLite) Repin(ctx context.Context, login string, githubID int64, actor, reason string) (*LoginPin, error) {
	fail := func(err error) (*LoginPin, error) { return nil, fmt.Errorf("store: re-pin login %s: %w", login, err) }
	key, err := NormalizeLogin(login)
	switch {
	case err != nil:
		return fail(err)
	case githubID <= 0:
		return fail(fmt.Errorf("GitHub user ID %d is not positive", githubID))
	case actor == "":
		return fail(errors.New("no actor"))
	case strings.TrimSpace(reason) == "":
		return fail(errors.New("no reason"))
	}
	var old *LoginPin
	err = s.update(ctx, func(tx *txn) error {
		p, found, err := tx.pin(key)
		if err != nil {
			return err
		}
		fields := map[string]string{"github_id": strconv.FormatInt(githubID, 10), "source": PinSourceAdmin}
		if found {
			old = &p
			fields["previous_github_id"] = strconv.FormatInt(p.GitHubID, 10)
		}
		now := s.now().UTC()
		if _, err := tx.ExecContext(ctx, `INSERT INTO login_pins (login, github_id, seen_as, source, pinned_at, actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (login) DO UPDATE SET github_id = excluded.github_id, seen_as = excluded.seen_as, source = excluded.source,
		pinned_at = excluded.pinned_at, actor = excluded.actor, reason = excluded.reason`,
			key, githubID, login, PinSourceAdmin, formatTime(now), actor, reason); err != nil {
			return err
		}
		return tx.audit(audit.Event{Time: now, Type: AuditTypeLoginPin, Actor: actor, Subject: key, Outcome: audit.OutcomeOK,
			Reason: reason, Fields: fields})
	})
	if err != nil {
		return fail(err)
	}
	return old, nil
}

// Unpin releases login on an admin's word, recording a "login.pin" audit
// event by actor with reason in the same transaction, and returns the pin
// removed: the login is pinned again to whichever account it is next seen
// with. A login not pinned fails with ErrNotFound.
func (s *SQLite) Unpin(ctx context.Context, login, actor, reason string) (LoginPin, error) {
	fail := func(err error) (LoginPin, error) {
		return LoginPin{}, fmt.Errorf("store: release login %s: %w", login, err)
	}
	key, err := NormalizeLogin(login)
	switch {
	case err != nil:
		return fail(err)
	case actor == "":
		return fail(errors.New("no actor"))
	case strings.TrimSpace(reason) == "":
		return fail(errors.New("no reason"))
	}
	var old LoginPin
	err = s.update(ctx, func(tx *txn) error {
		p, found, err := tx.pin(key)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("not pinned: %w", ErrNotFound)
		}
		old = p
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_pins WHERE login = ?`, key); err != nil {
			return err
		}
		return tx.audit(audit.Event{Type: AuditTypeLoginPin, Actor: actor, Subject: key, Outcome: audit.OutcomeOK, Reason: reason,
			Fields: map[string]string{"released": "true", "previous_github_id": strconv.FormatInt(p.GitHubID, 10)}})
	})
	if err != nil {
		return fail(err)
	}
	return old, nil
}

// LoginPinFilter selects login pins. Each zero field selects all.
type LoginPinFilter struct {
	Login    string // any case; "": any login
	GitHubID int64  // 0: any user
	Limit    int    // at most this many; 0: no limit
}

// LoginPins lists the pins matching f, by login.
func (s *SQLite) LoginPins(ctx context.Context, f LoginPinFilter) ([]LoginPin, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("store: login pins: negative limit %d", f.Limit)
	}
	var where []string
	var args []any
	if f.Login != "" {
		where = append(where, "login = ?")
		args = append(args, strings.ToLower(f.Login))
	}
	if f.GitHubID != 0 {
		where = append(where, "github_id = ?")
		args = append(args, f.GitHubID)
	}
	query := `SELECT login, github_id, seen_as, source, pinned_at, actor, reason FROM login_pins` + whereClause(where) + ` ORDER BY login`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: login pins: %w", err)
	}
	defer rows.Close()
	var out []LoginPin
	for rows.Next() {
		p, err := scanPin(rows)
		if err != nil {
			return nil, fmt.Errorf("store: login pins: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: login pins: %w", err)
	}
	return out, nil
}

// pin returns the pin of the login key (lower case), if there is one.
func (tx *txn) pin(key string) (LoginPin, bool, error) {
	p, err := scanPin(tx.QueryRowContext(tx.ctx, `SELECT login, github_id, seen_as, source, pinned_at, actor, reason FROM login_pins WHERE login = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return LoginPin{}, false, nil
	}
	return p, err == nil, err
}

func scanPin(row interface{ Scan(...any) error }) (LoginPin, error) {
	var p LoginPin
	var at string
	if err := row.Scan(&p.Login, &p.GitHubID, &p.SeenAs, &p.Source, &at, &p.Actor, &p.Reason); err != nil {
		return LoginPin{}, err
	}
	var err error
	p.Time, err = parseTime(at)
	return p, err
}
