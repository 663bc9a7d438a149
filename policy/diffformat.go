package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// NoChange is what a diff without any change in access prints.
const NoChange = "no change in access"

// WriteText writes the diff in plain words for a terminal or CI log.
func (d *Diff) WriteText(w io.Writer) error {
	var b strings.Builder
	if d.Empty() {
		b.WriteString(NoChange + "\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, s := range d.Settings {
		fmt.Fprintf(&b, "%s: %s -> %s\n", s.Setting, s.Old, s.New)
	}
	if len(d.Settings) > 0 {
		b.WriteString("\n")
	}
	if len(d.Hosts) > 0 {
		b.WriteString("hosts:\n")
		for _, h := range d.Hosts {
			fmt.Fprintf(&b, "  %s\n", hostChangeText(h, plain))
		}
		b.WriteString("\n")
	}
	for _, s := range d.Subjects {
		fmt.Fprintf(&b, "%s:\n", s.Subject)
		for _, line := range subjectLines(s, plain) {
			fmt.Fprintf(&b, "  %s\n", line)
		}
		b.WriteString("\n")
	}
	if !d.PerPerson && len(d.Subjects) > 0 {
		b.WriteString(perTeamNote + "\n")
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

const perTeamNote = "Changes are shown per team, user and CI workload. A person in several teams gets the union of their pairs, with permissions narrowed where roles overlap; pass --members for a per-person view."

// WriteMarkdown writes the diff as a pull request comment body.
func (d *Diff) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("### Access changes\n\n")
	if d.Empty() {
		b.WriteString(strings.ToUpper(NoChange[:1]) + NoChange[1:] + ".\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	if len(d.Settings) > 0 {
		b.WriteString("**Settings**\n\n")
		for _, s := range d.Settings {
			fmt.Fprintf(&b, "- %s: %s → %s\n", code(s.Setting), code(s.Old), code(s.New))
		}
		b.WriteString("\n")
	}
	if len(d.Hosts) > 0 {
		b.WriteString("**Hosts**\n\n")
		for _, h := range d.Hosts {
			fmt.Fprintf(&b, "- %s\n", hostChangeText(h, markdown))
		}
		b.WriteString("\n")
	}
	for _, s := range d.Subjects {
		fmt.Fprintf(&b, "**%s**\n\n", subjectMarkdown(s.Subject))
		for _, line := range subjectLines(s, markdown) {
			fmt.Fprintf(&b, "- %s\n", line)
		}
		b.WriteString("\n")
	}
	if !d.PerPerson && len(d.Subjects) > 0 {
		fmt.Fprintf(&b, "<sub>%s</sub>\n", strings.ReplaceAll(perTeamNote, "--members", "`--members`"))
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

// WriteJSON writes the diff as indented JSON.
func (d *Diff) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Changed bool `json:"changed"`
		*Diff
	}{!d.Empty(), d})
}

type style int

const (
	plain style = iota
	markdown
)

// code formats s as a Markdown code span, choosing a fence longer than any
// run of backticks inside it.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func (st style) name(s string) string {
	if st == markdown {
		return code(s)
	}
	return s
}

func (st style) arrow() string {
	if st == markdown {
		return "→"
	}
	return "->"
}

// maxMarkdownHosts bounds host lists in comments; text and JSON list all.
const maxMarkdownHosts = 20

func (st style) hosts(hosts []string) string {
	shown := hosts
	if st == markdown && len(hosts) > maxMarkdownHosts {
		shown = hosts[:maxMarkdownHosts]
	}
	parts := make([]string, len(shown))
	for i, h := range shown {
		parts[i] = st.name(h)
	}
	s := strings.Join(parts, ", ")
	if len(shown) < len(hosts) {
		s += fmt.Sprintf(" and %d more hosts", len(hosts)-len(shown))
	}
	return s
}

func hostChangeText(h HostChange, st style) string {
	switch h.Change {
	case "added":
		s := fmt.Sprintf("added %s at %s", st.name(h.Name), st.name(h.New.Address))
		if len(h.New.Labels) > 0 {
			s += ", labels " + st.list(h.New.Labels)
		}
		if len(h.New.HostKeys) > 0 {
			keys := make([]string, len(h.New.HostKeys))
			for i, k := range h.New.HostKeys {
				keys[i] = k.String()
			}
			s += ", pinned host keys " + st.list(keys)
		}
		return s
	case "removed":
		return fmt.Sprintf("removed %s (was %s)", st.name(h.Name), st.name(h.Old.Address))
	}
	details := make([]string, len(h.Details))
	for i, d := range h.Details {
		details[i] = strings.ReplaceAll(d, " -> ", " "+st.arrow()+" ")
	}
	s := fmt.Sprintf("changed %s: %s", st.name(h.Name), strings.Join(details, "; "))
	if h.Old.Address != h.New.Address {
		s += " (everyone with access to it now reaches the new address)"
	}
	return s
}

func (st style) list(items []string) string {
	parts := make([]string, len(items))
	for i, x := range items {
		parts[i] = st.name(x)
	}
	return strings.Join(parts, ", ")
}

func subjectMarkdown(s Subject) string {
	switch s.Kind {
	case "person":
		if len(s.Teams) > 0 {
			teams := make([]string, len(s.Teams))
			for i, t := range s.Teams {
				teams[i] = code(t)
			}
			return fmt.Sprintf("%s (teams %s)", code(s.Name), strings.Join(teams, ", "))
		}
		return code(s.Name)
	}
	return s.Kind + " " + code(s.Name)
}

func subjectLines(s SubjectChange, st style) []string {
	var lines []string
	for _, g := range s.Gained {
		line := fmt.Sprintf("gains %s on %s: %s", st.name(g.Principal), st.hosts(g.Hosts), termsText(g, st))
		lines = append(lines, line)
	}
	for _, g := range s.Lost {
		line := fmt.Sprintf("loses %s on %s", st.name(g.Principal), st.hosts(g.Hosts))
		if g.Reason != "" {
			line += " (" + g.Reason + ")"
		} else if len(g.Roles) > 0 {
			line += fmt.Sprintf(" (was granted by %s)", st.list(g.Roles))
		}
		lines = append(lines, line)
	}
	for _, c := range s.Changed {
		changes := make([]string, len(c.Changes))
		for i, x := range c.Changes {
			changes[i] = strings.ReplaceAll(x, " -> ", " "+st.arrow()+" ")
		}
		lines = append(lines, fmt.Sprintf("%s on %s: %s", st.name(c.Principal), st.hosts(c.Hosts), strings.Join(changes, "; ")))
	}
	if s.TTL != nil {
		lines = append(lines, fmt.Sprintf("certificate lifetime %s %s %s", s.TTL.Old, st.arrow(), s.TTL.New))
	}
	return lines
}

func termsText(g AccessGroup, st style) string {
	parts := []string{"permissions " + g.Permissions.String()}
	if g.ForceCommand != "" {
		parts = append(parts, "forced command "+st.name(g.ForceCommand))
	}
	if g.SourceAddresses != nil {
		parts = append(parts, "only from "+prefixList(g.SourceAddresses))
	}
	if g.RecordInput {
		parts = append(parts, "input recorded")
	}
	parts = append(parts, "via "+st.list(g.Roles))
	return strings.Join(parts, "; ")
}
