package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/keyrenew/tokens"
)

// printLink prints a new share link, the only secret the CLI ever prints,
// on stdout alone.
func (c *cli) printLink(keyID string, link *tokens.ShareLink) error {
	if c.json {
		return c.printJSON(struct {
			KeyID     string    `json:"key_id"`
			Link      string    `json:"link"`
			ExpiresAt time.Time `json:"expires_at"`
		}{keyID, link.URL, link.ExpiresAt.UTC()})
	}
	_, err := fmt.Fprintf(c.stdout, "key:     %s\nlink:    %s\nexpires: %s\nSend the link to the key's owner: it reveals the token once.\n",
		keyID, link.URL, formatTime(link.ExpiresAt))
	return err
}

// printDone reports a change: text for a person, or {"key_id", "result"}.
func (c *cli) printDone(keyID, result, text string) error {
	if c.json {
		return c.printJSON(struct {
			KeyID  string `json:"key_id,omitempty"`
			Result string `json:"result"`
		}{keyID, result})
	}
	_, err := fmt.Fprintln(c.stdout, text)
	return err
}

func (c *cli) printJSON(v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(append(out, '\n'))
	return err
}

type keyJSON struct {
	ID        string            `json:"id"`
	Account   string            `json:"account"`
	Name      string            `json:"name"`
	Active    bool              `json:"active"`
	Alert     string            `json:"alert"` // none, warning, critical
	CreatedAt time.Time         `json:"created_at"`
	Token     tokenJSON         `json:"token"`
	OldToken  *oldTokenJSON     `json:"old_token"`
	Link      *linkStateJSON    `json:"link"`       // null when the key has no link (undo or revoke-link revoked it)
	Scopes    []string          `json:"scopes"`     // [] for none
	Metadata  map[string]string `json:"metadata"`   // {} for none
	ExpiresAt *time.Time        `json:"expires_at"` // null: never
	LeakedAt  *time.Time        `json:"leaked_at"`  // null: never reported
}

type tokenJSON struct {
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

type oldTokenJSON struct {
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"` // null: deleted only by delete-old
}

type linkStateJSON struct {
	State     string    `json:"state"` // pending, used, expired
	ExpiresAt time.Time `json:"expires_at"`
}

// oldExpiry is when the old token stops verifying on its own; zero for
// none.
func oldExpiry(old *tokens.TokenInfo) time.Time {
	return old.ExpiresAt
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// printKeys prints keys as a table a person reads, or as a JSON array.
func (c *cli) printKeys(keys []*tokens.Key) error {
	if c.json {
		out := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			j := keyJSON{
				ID: k.ID, Account: k.Account, Name: k.Name, Active: k.Active,
				Alert:     k.Alert.String(),
				CreatedAt: k.CreatedAt.UTC(),
				Token:     tokenJSON{k.Token.CreatedAt.UTC(), optionalTime(k.Token.LastUsedAt)},
				Scopes:    k.Scopes,
				Metadata:  k.Metadata,
				ExpiresAt: optionalTime(k.ExpiresAt),
				LeakedAt:  optionalTime(k.LeakedAt),
			}
			if j.Scopes == nil {
				j.Scopes = []string{}
			}
			if j.Metadata == nil {
				j.Metadata = map[string]string{}
			}
			if k.OldToken != nil {
				j.OldToken = &oldTokenJSON{k.OldToken.CreatedAt.UTC(), optionalTime(k.OldToken.LastUsedAt), optionalTime(oldExpiry(k.OldToken))}
			}
			if k.Link != tokens.LinkNotFound {
				j.Link = &linkStateJSON{k.Link.String(), k.LinkExpiresAt.UTC()}
			}
			out = append(out, j)
		}
		return c.printJSON(out)
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no keys")
		return err
	}
	now := c.now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACCOUNT\tID\tTOKEN AGE\tLAST USED\tOLD TOKEN\tALERT\tSTATUS")
	for _, k := range keys {
		account := k.Account
		if account == "" {
			account = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			k.Name, account, k.ID, age(now, k.Token.CreatedAt), lastUsed(now, k.Token.LastUsedAt),
			oldToken(now, k.OldToken), k.Alert, status(now, k))
	}
	return tw.Flush()
}

func (c *cli) now() time.Time {
	if c.clock != nil {
		return c.clock.Now()
	}
	return time.Now()
}

// oldToken describes the old token: its age, last use and expiry.
func oldToken(now time.Time, old *tokens.TokenInfo) string {
	if old == nil {
		return "-"
	}
	s := age(now, old.CreatedAt) + " old, " + lastUsed(now, old.LastUsedAt)
	if exp := oldExpiry(old); !exp.IsZero() {
		s += ", expires " + formatTime(exp)
	}
	return s
}

func lastUsed(now, t time.Time) string {
	if t.IsZero() {
		return "never used"
	}
	return "used " + age(now, t) + " ago"
}

func status(now time.Time, k *tokens.Key) string {
	s := "active"
	if !k.Active {
		s = "inactive"
	}
	switch {
	case k.ExpiresAt.IsZero():
	case now.Before(k.ExpiresAt):
		s += ", expires " + formatTime(k.ExpiresAt)
	default:
		s += ", expired " + formatTime(k.ExpiresAt)
	}
	if !k.LeakedAt.IsZero() {
		s += ", leaked " + formatTime(k.LeakedAt)
	}
	switch k.Link {
	case tokens.LinkPending:
		s += ", link pending until " + formatTime(k.LinkExpiresAt)
	case tokens.LinkExpired:
		s += ", link expired unopened"
	}
	return s
}

// age is a short, whole-unit duration: 5m, 7h, 40d.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Hour:
		return fmt.Sprintf("%dm", max(0, int(d/time.Minute)))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
