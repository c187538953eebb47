package tokens_test

import (
	"crypto/sha512"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
)

// FuzzRedeemLink feeds arbitrary strings to RedeemLink and LinkStatus
// (R8, S5). A string that is not the share base followed by 43 base62
// characters must give ErrInvalidLink without a store call; any other
// string is looked up and gives the credentials once, then ErrLinkUsed,
// or ErrLinkNotFound. Nothing panics.
func FuzzRedeemLink(f *testing.F) {
	fx := newFixture(f)
	key, link := fx.create("acme", "fuzz")
	id := linkID(f, link.URL)
	for _, seed := range []string{
		link.URL,
		testBase + strings.Repeat("A", 43),
		testBase + id[:42],
		testBase + id + "A",
		testBase + id + "/",
		testBase + id + "?",
		testBase + id + "#",
		testBase + "%" + id[:42],
		"http://share.example.com/credentials/" + id,
		"https://share.example.com.evil.com/credentials/" + id,
		"https://user@share.example.com/credentials/" + id,
		"https://share.example.com/credentials/../credentials/" + id,
		"https://SHARE.example.com/credentials/" + id,
		testBase,
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, url string) {
		fx.store.reset()
		status, statusErr := fx.m.LinkStatus(fx.ctx, url)
		creds, err := fx.m.RedeemLink(fx.ctx, url)

		rest, underBase := strings.CutPrefix(url, testBase)
		if !underBase || !linkIDPattern.MatchString(rest) {
			require.ErrorIs(t, statusErr, tokens.ErrInvalidLink)
			require.ErrorIs(t, err, tokens.ErrInvalidLink)
			require.Nil(t, creds)
			require.Zero(t, fx.store.calls.Load(), "an invalid link reached the store")
			return
		}
		require.NoError(t, statusErr)
		if url != link.URL {
			require.Equal(t, tokens.LinkNotFound, status.State)
			require.ErrorIs(t, err, tokens.ErrLinkNotFound)
			require.Nil(t, creds)
			return
		}
		if err == nil {
			require.Equal(t, tokens.LinkPending, status.State)
			require.Equal(t, key.ID, creds.KeyID)
			_, verr := fx.m.Verify(fx.ctx, creds.KeyID, creds.Token)
			require.NoError(t, verr)
			return
		}
		require.Equal(t, tokens.LinkUsed, status.State)
		require.ErrorIs(t, err, tokens.ErrLinkUsed)
		require.Nil(t, creds)
	})
}

// FuzzVerify feeds arbitrary strings to Verify as a token and as a key ID
// (R9, S3). A string that is not a well-formed token gives
// ErrMalformedToken without a store call; a well-formed token other than
// the key's gives ErrInvalidCredentials and is not called malformed; the
// key's token verifies. Nothing panics.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	c := fx.issued()
	body := c.Token[4 : 4+43]
	for _, seed := range []string{
		c.Token,
		c.KeyID,
		replaceAt(c.Token, 10),
		replaceAt(c.Token, len(c.Token)-1),
		c.Token[:len(c.Token)-1],
		c.Token + "A",
		forgeToken("tok", replaceAt(body, 42)),
		forgeToken("acme", body),
		forgeToken(strings.Repeat("p", 16), body),
		forgeToken(strings.Repeat("p", 17), body),
		"tok_",
		"",
		"\x00",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		fx.store.reset()
		k, err := fx.m.Verify(fx.ctx, c.KeyID, input)
		switch {
		case input == c.Token:
			require.NoError(t, err)
			require.Equal(t, c.KeyID, k.ID)
		case wellFormedToken(input):
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
			require.NotErrorIs(t, err, tokens.ErrMalformedToken)
			require.Nil(t, k)
		default:
			require.ErrorIs(t, err, tokens.ErrMalformedToken)
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
			require.Nil(t, k)
			require.Zero(t, fx.store.calls.Load(), "a malformed token reached the store")
		}

		// A well-formed token drawn from the input is wrong, not malformed.
		forged := forgeToken("tok", bodyFrom(input))
		if forged != c.Token {
			k, err = fx.m.Verify(fx.ctx, c.KeyID, forged)
			require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
			require.NotErrorIs(t, err, tokens.ErrMalformedToken)
			require.Nil(t, k)
		}

		// The input as a key ID with the key's token: only the key's own ID verifies.
		k, err = fx.m.Verify(fx.ctx, input, c.Token)
		if input == c.KeyID {
			require.NoError(t, err)
			return
		}
		require.ErrorIs(t, err, tokens.ErrInvalidCredentials)
		require.Equal(t, tokens.ErrInvalidCredentials.Error(), err.Error())
		require.Nil(t, k)
	})
}

// bodyFrom maps s to 43 base62 characters.
func bodyFrom(s string) string {
	sum := sha512.Sum512([]byte(s))
	out := make([]byte, 43)
	for i := range out {
		out[i] = base62[int(sum[i])%len(base62)]
	}
	return string(out)
}
