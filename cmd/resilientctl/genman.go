package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// gen-man writes one man page per command from the command tree itself, so
// the pages cannot drift from the CLI. It is hidden: packaging runs it
// (scripts/build-deb.sh), users do not. cobra/doc would do the same but
// needs github.com/cpuguy83/go-md2man, which is not a dependency.
func init() {
	extraCommands = append(extraCommands, genManCmd)
}

func genManCmd(*globals) *cobra.Command {
	var dir, section, source, configPage string
	c := &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages of resilientctl into DIR",
		Hidden: true,
		Args:   args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir = a[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			date, err := manDate()
			if err != nil {
				return err
			}
			m := manWriter{section: section, source: source, date: date}
			if configPage != "" {
				if err := os.WriteFile(configPage, m.configPage(), 0o644); err != nil {
					return err
				}
			}
			return m.tree(cmd.Root(), dir)
		},
	}
	c.Flags().StringVar(&section, "section", "1", "man section")
	c.Flags().StringVar(&source, "source", "resilienced "+version, "footer source (package and version)")
	c.Flags().StringVar(&configPage, "config-page", "", "also write resilienced.yaml(5), the configuration reference, to this file")
	return c
}

// manDate is SOURCE_DATE_EPOCH when set (reproducible builds), else today.
func manDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Now().UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

type manWriter struct {
	section, source string
	date            time.Time
}

// documented reports whether a command gets a page: not hidden, not help.
func documented(c *cobra.Command) bool {
	return c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand()
}

func (m manWriter) tree(c *cobra.Command, dir string) error {
	for _, sub := range c.Commands() {
		if !documented(sub) {
			continue
		}
		if err := m.tree(sub, dir); err != nil {
			return err
		}
	}
	name := pageName(c) + "." + m.section
	return os.WriteFile(filepath.Join(dir, name), m.page(c), 0o644)
}

// pageName is "resilientctl" for the root, "resilientctl-session-show" below.
func pageName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-")
}

func (m manWriter) page(c *cobra.Command) []byte {
	var b bytes.Buffer
	title := strings.ToUpper(pageName(c))
	fmt.Fprintf(&b, ".TH %q %q %q %q %q\n", title, m.section, m.date.Format("2006-01-02"), m.source, "resilienced manual")
	b.WriteString(".nh\n.ad l\n")

	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", roffEscape(pageName(c)), roffEscape(c.Short))

	b.WriteString(".SH SYNOPSIS\n")
	use := c.UseLine()
	if c.HasAvailableSubCommands() && !c.Runnable() {
		use = c.CommandPath() + " COMMAND"
	}
	fmt.Fprintf(&b, ".B %s\n", roffEscape(c.CommandPath()))
	if rest := strings.TrimSpace(strings.TrimPrefix(use, c.CommandPath())); rest != "" {
		fmt.Fprintf(&b, "%s\n", roffEscape(rest))
	}

	b.WriteString(".SH DESCRIPTION\n")
	desc := c.Long
	if desc == "" {
		desc = c.Short
	}
	paragraphs(&b, desc)

	if c.HasAvailableSubCommands() {
		b.WriteString(".SH COMMANDS\n")
		for _, sub := range c.Commands() {
			if !documented(sub) {
				continue
			}
			fmt.Fprintf(&b, ".TP\n.B %s\n%s (see \\fB%s\\fR(%s))\n", roffEscape(sub.Name()), roffEscape(sub.Short), roffEscape(pageName(sub)), m.section)
		}
	}
	if c.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n")
		for _, l := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
			b.WriteString(roffLine(l) + "\n")
		}
		b.WriteString(".fi\n")
	}
	if fs := c.NonInheritedFlags(); fs.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS\n")
		flags(&b, fs)
	}
	if fs := c.InheritedFlags(); fs.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS INHERITED FROM PARENT COMMANDS\n")
		flags(&b, fs)
	}
	if !c.HasParent() {
		b.WriteString(".SH ENVIRONMENT\n.TP\n.B RESILIENT_SOCKET\nThe daemon's socket when \\fB\\-\\-socket\\fR is not given.\n")
		b.WriteString(".SH EXIT STATUS\n.TP\n.B 0\nSuccess.\n.TP\n.B 1\nThe daemon answered with an error, or the call failed.\n" +
			".TP\n.B 2\nUsage error.\n.TP\n.B 3\nThe daemon cannot be reached.\n")
	}

	b.WriteString(".SH SEE ALSO\n")
	var see []string
	if p := c.Parent(); p != nil {
		see = append(see, fmt.Sprintf("\\fB%s\\fR(%s)", roffEscape(pageName(p)), m.section))
	}
	for _, sub := range c.Commands() {
		if documented(sub) {
			see = append(see, fmt.Sprintf("\\fB%s\\fR(%s)", roffEscape(pageName(sub)), m.section))
		}
	}
	see = append(see, "\\fBresilienced\\fR(8)")
	b.WriteString(strings.Join(see, ", ") + "\n")
	return b.Bytes()
}

func paragraphs(b *bytes.Buffer, text string) {
	for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		for _, l := range strings.Split(p, "\n") {
			b.WriteString(roffLine(l) + "\n")
		}
	}
}

func flags(b *bytes.Buffer, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		b.WriteString(".TP\n")
		name := "\\fB\\-\\-" + roffEscape(f.Name) + "\\fR"
		if f.Shorthand != "" {
			name = "\\fB\\-" + roffEscape(f.Shorthand) + "\\fR, " + name
		}
		varname, usage := pflag.UnquoteUsage(f)
		if varname != "" {
			name += " \\fI" + roffEscape(varname) + "\\fR"
		}
		b.WriteString(name + "\n")
		text := roffEscape(usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
			text += " (default: " + roffEscape(f.DefValue) + ")"
		}
		b.WriteString(guardLine(text) + "\n")
	})
}

// roffEscape makes text safe inside a roff line: backslashes and dashes.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// roffLine escapes a line of running text.
func roffLine(s string) string { return guardLine(roffEscape(s)) }

// guardLine keeps an escaped line from being read as a roff request, which
// is what a line starting with . or ' would be.
func guardLine(s string) string {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}
