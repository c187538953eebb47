package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyrenew/tokens"
)

// defaultPoll is how often events -follow asks for new events: often enough
// for a person watching an incident, rare enough to cost the database
// nothing.
const defaultPoll = 2 * time.Second

func eventsFlags(fs *flag.FlagSet) {
	fs.String("key", "", "only the events of this key")
	fs.String("account", "", "only the events of the keys of this account")
	fs.String("after", "", "start after the event with this cursor (the \"cursor\" of -json output)")
	fs.Int("limit", 0, "stop after this many events (0: no limit)")
	fs.Bool("follow", false, "after the events so far, print new ones as they come until interrupted (-json: one object a line)")
	fs.Duration("poll", defaultPoll, "with -follow, how often to look for new events")
}

func runEvents(ctx context.Context, c *cli, m *manager, fs *flag.FlagSet, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	q := tokens.EventQuery{
		KeyID:   flagValue(fs, "key").Get().(string),
		Account: flagValue(fs, "account").Get().(string),
		After:   flagValue(fs, "after").Get().(string),
	}
	if flagSet(fs, "account") && q.Account == "" {
		// An empty EventQuery.Account selects every account.
		return usagef("-account must name an account: events cannot select the keys without one")
	}
	limit := flagValue(fs, "limit").Get().(int)
	if limit < 0 {
		return usagef("-limit must be 0 (no limit) or more")
	}
	follow := flagValue(fs, "follow").Get().(bool)
	poll := flagValue(fs, "poll").Get().(time.Duration)
	switch {
	case poll <= 0:
		return usagef("-poll must be a positive duration such as 2s")
	case flagSet(fs, "poll") && !follow:
		return usagef("-poll is for -follow")
	}
	page := c.eventPage
	if page == 0 {
		page = tokens.MaxEventPage
	}

	out := c.eventPrinter(follow)
	printed, idle := 0, 0
	for limit == 0 || printed < limit {
		q.Limit = page
		if limit > 0 {
			q.Limit = min(page, limit-printed)
		}
		events, err := m.Events(ctx, q)
		if err != nil {
			if follow && ctx.Err() != nil {
				break // interrupted: the usual end of -follow
			}
			return err
		}
		if err := out.print(events); err != nil {
			return err
		}
		printed += len(events)
		if len(events) > 0 {
			q.After = events[len(events)-1].Cursor
		}
		if len(events) == q.Limit {
			continue // a full page: more may be there already
		}
		if !follow {
			break
		}
		if len(events) == 0 {
			idle++
			if c.followIdle > 0 && idle >= c.followIdle {
				break
			}
		}
		if !sleep(ctx, poll) {
			break
		}
	}
	return out.close()
}

// sleep waits for d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// eventPrinter prints events page by page as they are read, so that
// neither a long trail nor -follow holds them all: a table, a JSON array,
// or with -follow, whose array would never end, one JSON object a line.
type eventPrinter struct {
	w      io.Writer
	table  *tabwriter.Writer // nil for JSON
	lines  bool              // JSON Lines
	header bool              // the table header or the opening "[" is out
}

func (c *cli) eventPrinter(follow bool) *eventPrinter {
	p := &eventPrinter{w: c.stdout, lines: c.json && follow}
	if !c.json {
		p.table = tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	}
	return p
}

type eventJSON struct {
	Cursor  string    `json:"cursor"`
	At      time.Time `json:"at"`
	KeyID   string    `json:"key_id"`
	Account string    `json:"account"`
	Type    string    `json:"type"`
	Actor   string    `json:"actor"` // "" when the change named no actor
	// For token_renewed: "later" or "now", as renew's -old, and the old
	// token's -old-ttl as a Go duration ("72h0m0s"), null without one.
	// null for the other types.
	Policy      *string `json:"policy"`
	OldTokenTTL *string `json:"old_token_ttl"`
	// For key_updated: the fields changed ("expires_at", "metadata",
	// "name", "scopes"); null for the other types.
	Fields []string `json:"fields"`
	// For token_leaked: who reported it and where the token was seen
	// (S10); null for the other types.
	Source *string `json:"source"`
	URL    *string `json:"url"`
}

func toEventJSON(e tokens.Event) eventJSON {
	j := eventJSON{
		Cursor: e.Cursor, At: e.At.UTC(), KeyID: e.KeyID, Account: e.Account,
		Type: string(e.Type), Actor: e.Actor,
	}
	if e.Type == tokens.EventTokenRenewed {
		policy := policyName(e.Policy)
		j.Policy = &policy
		if e.OldTokenTTL > 0 {
			ttl := e.OldTokenTTL.String()
			j.OldTokenTTL = &ttl
		}
	}
	switch e.Type {
	case tokens.EventKeyUpdated:
		j.Fields = append([]string{}, e.Fields...)
	case tokens.EventTokenLeaked:
		j.Source, j.URL = &e.Source, &e.URL
	}
	return j
}

// policyName is the -old value that chooses p.
func policyName(p tokens.OldTokenPolicy) string {
	switch p {
	case tokens.DeleteLater:
		return "later"
	case tokens.DeleteNow:
		return "now"
	}
	return p.String()
}

func (p *eventPrinter) print(events []tokens.Event) error {
	switch {
	case p.table != nil:
		return p.printTable(events)
	case p.lines:
		for _, e := range events {
			out, err := json.Marshal(toEventJSON(e))
			if err != nil {
				return err
			}
			if _, err := p.w.Write(append(out, '\n')); err != nil {
				return err
			}
		}
		return nil
	}
	// An indented array, as printJSON writes it, one element at a time.
	for _, e := range events {
		out, err := json.MarshalIndent(toEventJSON(e), "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if !p.header {
			sep, p.header = "[\n  ", true
		}
		if _, err := io.WriteString(p.w, sep); err != nil {
			return err
		}
		if _, err := p.w.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// printTable writes a page of rows. Columns line up within a page: the
// table is flushed page by page, so that -follow shows events as they come.
func (p *eventPrinter) printTable(events []tokens.Event) error {
	if len(events) == 0 {
		return nil
	}
	if !p.header {
		fmt.Fprintln(p.table, "TIME\tKEY\tACCOUNT\tACTOR\tEVENT")
		p.header = true
	}
	for _, e := range events {
		fmt.Fprintf(p.table, "%s\t%s\t%s\t%s\t%s\n",
			e.At.UTC().Format("2006-01-02 15:04:05 UTC"), e.KeyID, orDash(e.Account),
			orDash(e.Actor), describeEvent(e))
	}
	return p.table.Flush()
}

// close ends the output: "no events" or the end of the JSON array.
func (p *eventPrinter) close() error {
	var err error
	switch {
	case p.lines:
	case p.table != nil && !p.header:
		_, err = fmt.Fprintln(p.w, "no events")
	case p.table != nil:
	case !p.header:
		_, err = io.WriteString(p.w, "[]\n")
	default:
		_, err = io.WriteString(p.w, "\n]\n")
	}
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeEvent says what an event records, for a person; for a renewal,
// what became of the previous token.
func describeEvent(e tokens.Event) string {
	switch e.Type {
	case tokens.EventKeyCreated:
		return "key created"
	case tokens.EventTokenRenewed:
		switch {
		case e.Policy == tokens.DeleteNow:
			return "token renewed (old token deleted at once)"
		case e.OldTokenTTL > 0:
			return "token renewed (old token kept for " + e.OldTokenTTL.String() + ")"
		}
		return "token renewed (old token kept until delete-old)"
	case tokens.EventLinkRedeemed:
		return "link redeemed"
	case tokens.EventLinkRevoked:
		return "link revoked"
	case tokens.EventOldTokenDeleted:
		return "old token deleted"
	case tokens.EventRenewalUndone:
		return "renewal undone"
	case tokens.EventKeyActivated:
		return "key activated"
	case tokens.EventKeyDeactivated:
		return "key deactivated"
	case tokens.EventKeyDeleted:
		return "key deleted"
	case tokens.EventRevokedTokenUsed:
		return "revoked token used"
	case tokens.EventKeyUpdated:
		return "key updated (" + strings.Join(e.Fields, ", ") + ")"
	case tokens.EventKeyImported:
		return "key imported"
	case tokens.EventTokenLeaked:
		if e.URL == "" {
			return "token reported leaked by " + e.Source
		}
		return "token reported leaked by " + e.Source + " at " + e.URL
	}
	return string(e.Type) // a type newer than this command
}
