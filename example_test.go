package tokens_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// The life of a key: created, handed over with a single-access link,
// verified, renewed without downtime, and the old token deleted once the
// integration uses the new one.
func Example() {
	ctx := context.Background()
	clk := clock.NewMock() // in production, leave WithClock out
	clk.Set(time.Date(2025, time.January, 15, 9, 0, 0, 0, time.UTC))
	m, err := tokens.NewManager(memstore.New(),
		tokens.WithClock(clk),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
	)
	if err != nil {
		log.Fatal(err)
	}

	// The operator creates a key and sends its link to the integrator.
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "erp-sync"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("link expires:", link.ExpiresAt.Format(time.RFC3339))

	// The integrator opens it, once, and configures the credentials.
	first, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}
	_, err = m.RedeemLink(ctx, link.URL)
	fmt.Println("opened again:", err)

	// The service verifies every request.
	_, err = m.Verify(ctx, first.KeyID, first.Token)
	fmt.Println("verify:", err)

	// Three months on, the key asks for a renewal.
	clk.Set(time.Date(2025, time.April, 15, 9, 0, 0, 0, time.UTC))
	k, err := m.Key(ctx, key.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alert:", k.Alert)

	// Renew with the default, DeleteLater: the new token is current at
	// once and the old one keeps working while the integration switches.
	link, err = m.Renew(ctx, key.ID, tokens.RenewOptions{})
	if err != nil {
		log.Fatal(err)
	}
	second, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}
	_, errOld := m.Verify(ctx, key.ID, first.Token)
	_, errNew := m.Verify(ctx, key.ID, second.Token)
	fmt.Println("old token works:", errOld == nil, "new token works:", errNew == nil)
	k, err = m.Key(ctx, key.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alert:", k.Alert, "old token last used:", k.OldToken.LastUsedAt.Format(time.RFC3339))

	// A second renewal waits until the old token is gone.
	_, err = m.Renew(ctx, key.ID, tokens.RenewOptions{})
	fmt.Println("renew again:", err)

	// The integration uses the new token: delete the old one.
	if err := m.DeleteOld(ctx, key.ID); err != nil {
		log.Fatal(err)
	}
	_, err = m.Verify(ctx, key.ID, first.Token)
	fmt.Println("old token:", err)
	_, err = m.Verify(ctx, key.ID, second.Token)
	fmt.Println("new token:", err)

	// Output:
	// link expires: 2025-01-16T09:00:00Z
	// opened again: tokens: share link already used
	// verify: <nil>
	// alert: warning
	// old token works: true new token works: true
	// alert: none old token last used: 2025-04-15T09:00:00Z
	// renew again: tokens: old token pending: delete it or undo the renewal first
	// old token: tokens: invalid credentials: token revoked
	// new token: <nil>
}

// Undo backs a renewal out while the old token exists, whether or not the
// new link was opened: the old token is current again, with its own times.
func ExampleManager_Undo() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2025, time.March, 3, 8, 30, 0, 0, time.UTC))
	m, err := tokens.NewManager(memstore.New(),
		tokens.WithClock(clk),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
	)
	if err != nil {
		log.Fatal(err)
	}
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "billing"})
	if err != nil {
		log.Fatal(err)
	}
	old, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}

	clk.Add(48 * time.Hour)
	link, err = m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteLater})
	if err != nil {
		log.Fatal(err)
	}
	latest, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}

	// The new token went to the wrong place: back out.
	if err := m.Undo(ctx, key.ID); err != nil {
		log.Fatal(err)
	}
	_, err = m.Verify(ctx, key.ID, old.Token)
	fmt.Println("old token:", err)
	_, err = m.Verify(ctx, key.ID, latest.Token)
	fmt.Println("undone token:", err)
	_, err = m.RedeemLink(ctx, link.URL)
	fmt.Println("renewal link:", err)
	k, err := m.Key(ctx, key.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current token created:", k.Token.CreatedAt.Format(time.RFC3339))
	fmt.Println("undo again:", m.Undo(ctx, key.ID))

	// Output:
	// old token: <nil>
	// undone token: tokens: invalid credentials: token revoked
	// renewal link: tokens: share link not found
	// current token created: 2025-03-03T08:30:00Z
	// undo again: tokens: nothing to undo: the key has no old token
}

// DeleteNow replaces a token at once, for example after a leak: the old
// token stops working in the same step.
func ExampleManager_Renew_deleteNow() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2025, time.June, 1, 12, 0, 0, 0, time.UTC))
	m, err := tokens.NewManager(memstore.New(),
		tokens.WithClock(clk),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
	)
	if err != nil {
		log.Fatal(err)
	}
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "leaked"})
	if err != nil {
		log.Fatal(err)
	}

	// While the key's link is pending, a renewal would replace a token
	// nobody has received yet.
	_, err = m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	fmt.Println("renew before the link is opened:", err)

	leaked, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}
	link, err = m.Renew(ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	if err != nil {
		log.Fatal(err)
	}
	_, err = m.Verify(ctx, key.ID, leaked.Token)
	fmt.Println("leaked token:", err)
	fmt.Println("new link expires:", link.ExpiresAt.Format(time.RFC3339))

	// Output:
	// renew before the link is opened: tokens: renewal pending: the latest share link has not been redeemed or expired
	// leaked token: tokens: invalid credentials: token revoked
	// new link expires: 2025-06-02T12:00:00Z
}

// A share link reveals its credentials once, for 24 hours. LinkStatus tells
// a landing page what opening it would give, without consuming it.
func ExampleManager_RedeemLink() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2025, time.May, 20, 17, 0, 0, 0, time.UTC))
	m, err := tokens.NewManager(memstore.New(),
		tokens.WithClock(clk),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
	)
	if err != nil {
		log.Fatal(err)
	}
	_, opened, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "opened"})
	if err != nil {
		log.Fatal(err)
	}
	_, forgotten, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "forgotten"})
	if err != nil {
		log.Fatal(err)
	}

	status, err := m.LinkStatus(ctx, opened.URL)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("status:", status.State)
	creds, err := m.RedeemLink(ctx, opened.URL)
	fmt.Println("first opening:", err, creds != nil)
	_, err = m.RedeemLink(ctx, opened.URL)
	fmt.Println("second opening:", err)

	clk.Add(24 * time.Hour)
	_, err = m.RedeemLink(ctx, forgotten.URL)
	fmt.Println("a day later:", err)
	_, err = m.RedeemLink(ctx, "https://share.example.com.evil.com/credentials/"+opened.URL[len(opened.URL)-43:])
	fmt.Println("look-alike host:", err)

	// Output:
	// status: pending
	// first opening: <nil> true
	// second opening: tokens: share link already used
	// a day later: tokens: share link expired
	// look-alike host: tokens: invalid share link
}

// Renewal alerts count calendar months from the current token's creation:
// a warning after the period, critical three months later. An alert never
// disables a token.
func ExampleWithAlertAfter() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2025, time.January, 31, 10, 0, 0, 0, time.UTC))
	m, err := tokens.NewManager(memstore.New(),
		tokens.WithClock(clk),
		tokens.WithShareBaseURL("https://share.example.com/credentials/"),
		tokens.WithAlertAfter(6),
	)
	if err != nil {
		log.Fatal(err)
	}
	key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "reports"})
	if err != nil {
		log.Fatal(err)
	}
	creds, err := m.RedeemLink(ctx, link.URL)
	if err != nil {
		log.Fatal(err)
	}
	for _, at := range []time.Time{
		time.Date(2025, time.July, 31, 9, 59, 59, 0, time.UTC),
		time.Date(2025, time.July, 31, 10, 0, 0, 0, time.UTC),
		time.Date(2025, time.October, 31, 10, 0, 0, 0, time.UTC),
	} {
		clk.Set(at)
		k, err := m.Verify(ctx, key.ID, creds.Token)
		fmt.Println(at.Format(time.DateTime), k.Alert, err)
	}

	// Output:
	// 2025-07-31 09:59:59 none <nil>
	// 2025-07-31 10:00:00 warning <nil>
	// 2025-10-31 10:00:00 critical <nil>
}
