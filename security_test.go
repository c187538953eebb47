package tokens_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
)

// Tests of the security rules S1-S9 of docs/rules.md, one rule per name
// prefix. S7, host binding, is a rule of the link pages: tokenhttp tests
// it. source_test.go reads the source for S1 and S3.

func TestS1_TokenFormat(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	m := tokenPattern.FindStringSubmatch(c.Token)
	require.NotNil(t, m, "token %d bytes long does not have the token form", len(c.Token))
	require.Equal(t, tokens.DefaultTokenPrefix, m[1])
	require.Len(t, m[2], 43)
	require.Equal(t, tokenChecksum(m[1]+"_"+m[2]), m[3], "the checksum is not the CRC32 of the rest in base62")
	require.True(t, wellFormedToken(c.Token))
}

func TestS1_SecretsCarryAtLeast256Bits(t *testing.T) {
	// 43 characters of a 62-letter alphabet drawn uniformly carry
	// 43*log2(62) = 256.03 bits; TestS1_SecretsAreDistinctAndUniform checks
	// the "uniformly".
	require.GreaterOrEqual(t, 43*math.Log2(62), 256.0)
	f := newFixture(t)
	_, link := f.create("acme", "erp-sync")
	require.Regexp(t, linkIDPattern, linkID(t, link.URL))
	c := f.redeem(link)
	body := tokenPattern.FindStringSubmatch(c.Token)[2]
	require.Len(t, body, 43)
	require.Regexp(t, `^[0-9A-Za-z]+$`, body)
}

// TestS1_SecretsAreDistinctAndUniform draws 1000 tokens and link IDs and
// checks that all differ and that their characters pass a chi-square test
// of uniformity over the 62 letters. A modulo-biased draw (byte % 62
// without rejection) gives a statistic near 560 here; the bound of 160
// has a false-alarm probability below one in a billion.
func TestS1_SecretsAreDistinctAndUniform(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	counts := map[rune]int{}
	total := 0
	for range 1000 {
		key, link := f.create("acme", "erp-sync")
		id := linkID(t, link.URL)
		c := f.redeem(link)
		body := tokenPattern.FindStringSubmatch(c.Token)[2]
		for _, s := range []string{key.ID, id, body} {
			require.False(t, seen[s], "a secret or key ID repeated")
			seen[s] = true
		}
		for _, r := range id + body {
			counts[r]++
			total++
		}
	}
	require.Len(t, counts, 62)
	expected := float64(total) / 62
	chi2 := 0.0
	for _, r := range base62 {
		d := float64(counts[r]) - expected
		chi2 += d * d / expected
	}
	require.Less(t, chi2, 160.0, "secret characters are not uniform over base62: %v", counts)
}

// secretForms returns s and the encodings in which it could hide in a dump.
func secretForms(s string) []string {
	b := []byte(s)
	return []string{
		s,
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}

// dump returns everything the memstore holds about keys, in several
// renderings, as a database dump would show it.
func dump(t *testing.T, f *fixture, ids []string, accounts ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	add := func(rec tokens.KeyRecord) {
		fmt.Fprintf(&out, "%#v\n%+v\n%s\n", rec, rec, rec.Link.Sealed)
		fmt.Fprintf(&out, "%x %x %x %x\n", rec.Current.Digest, rec.Old.Digest, rec.Link.Digest, rec.Link.Sealed)
		out.Write(rec.Current.Digest[:])
		out.Write(rec.Old.Digest[:])
		out.Write(rec.Link.Digest[:])
		out.Write(rec.Link.Sealed)
	}
	for _, account := range accounts {
		recs, err := f.mem.Keys(f.ctx, account)
		require.NoError(t, err)
		for _, rec := range recs {
			add(rec)
		}
	}
	for _, id := range ids {
		if rec, err := f.mem.Key(f.ctx, id); err == nil {
			add(rec)
			if rec.HasLink {
				byLink, err := f.mem.KeyByLink(f.ctx, rec.Link.Digest)
				require.NoError(t, err)
				add(byLink)
			}
		}
	}
	return out.Bytes()
}

func requireNoSecretIn(t *testing.T, data []byte, secrets []string, where string) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range secretForms(s) {
			require.False(t, bytes.Contains(data, []byte(form)), "%s holds a secret (%d bytes)", where, len(form))
		}
	}
}

func TestS2_StoreDumpHoldsNoTokenOrLinkID(t *testing.T) {
	f := newFixture(t)
	var secrets, ids []string
	reveal := func(id string, link *tokens.ShareLink) string {
		tok := f.peek(id, link)
		secrets = append(secrets, tok, tok[4:4+43], linkID(t, link.URL), link.URL)
		return tok
	}

	pending, l1 := f.create("acme", "pending")
	reveal(pending.ID, l1)
	redeemed, l2 := f.create("acme", "redeemed")
	reveal(redeemed.ID, l2)
	f.redeem(l2)
	renewed, l3 := f.create("acme", "renewed")
	oldToken := reveal(renewed.ID, l3)
	f.redeem(l3)
	l4 := f.renew(renewed.ID, tokens.DeleteLater)
	currentToken := reveal(renewed.ID, l4)
	undone, l5 := f.create("other", "undone")
	reveal(undone.ID, l5)
	f.redeem(l5)
	l6 := f.renew(undone.ID, tokens.DeleteLater)
	reveal(undone.ID, l6)
	require.NoError(t, f.m.Undo(f.ctx, undone.ID))
	ids = append(ids, pending.ID, redeemed.ID, renewed.ID, undone.ID)

	data := dump(t, f, ids, "acme", "other")
	require.NotEmpty(t, data)
	requireNoSecretIn(t, data, secrets, "the store dump")

	// What the store keeps of a token is its SHA-256 digest.
	rec := f.record(renewed.ID)
	require.Equal(t, tokens.Digest(sha256.Sum256([]byte(currentToken))), rec.Current.Digest)
	require.True(t, rec.HasOld)
	require.Equal(t, tokens.Digest(sha256.Sum256([]byte(oldToken))), rec.Old.Digest)
}

func TestS2_SealedTokenIsNotTheTokenAndTheDigestDoesNotOpenIt(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	tok := f.peek(key.ID, link)
	id := linkID(t, link.URL)
	rec := f.record(key.ID)
	sealed := rec.Link.Sealed
	require.NotEmpty(t, sealed)
	require.False(t, bytes.Contains(sealed, []byte(tok)))
	require.False(t, bytes.Contains(sealed, []byte(tok[4:4+43])))
	require.NotEqual(t, tokens.Digest(sha256.Sum256([]byte(id))), rec.Link.Digest, "the link digest is a plain SHA-256 of its ID")

	// An attacker holding the dump tries the stored link digest, and its
	// hash, as the AES-GCM key, with the usual nonce layouts.
	for _, key := range [][]byte{rec.Link.Digest[:], sha256Bytes(rec.Link.Digest[:]), rec.Current.Digest[:]} {
		block, err := aes.NewCipher(key)
		require.NoError(t, err)
		aead, err := cipher.NewGCM(block)
		require.NoError(t, err)
		ns := aead.NonceSize()
		require.Greater(t, len(sealed), ns+aead.Overhead())
		for _, ad := range [][]byte{nil, []byte(rec.ID)} {
			_, err := aead.Open(nil, sealed[:ns], sealed[ns:], ad)
			require.Error(t, err, "the stored digest opens the sealed token")
			_, err = aead.Open(nil, sealed[len(sealed)-ns:], sealed[:len(sealed)-ns], ad)
			require.Error(t, err, "the stored digest opens the sealed token")
		}
	}
}

func sha256Bytes(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestS2_SealedTokenIsWipedOnceUnneeded(t *testing.T) {
	sealedOf := func(f *fixture, id string) []byte {
		t.Helper()
		rec := f.record(id)
		require.True(t, rec.HasLink)
		require.NotEmpty(t, rec.Link.Sealed)
		return rec.Link.Sealed
	}
	t.Run("redeemed", func(t *testing.T) {
		f := newFixture(t)
		key, link := f.create("acme", "erp-sync")
		sealed := sealedOf(f, key.ID)
		f.redeem(link)
		rec := f.record(key.ID)
		require.Empty(t, rec.Link.Sealed)
		require.False(t, bytes.Contains(dump(t, f, []string{key.ID}, "acme"), sealed))
	})
	t.Run("superseded", func(t *testing.T) {
		f := newFixture(t)
		key, _ := f.create("acme", "erp-sync")
		sealed := sealedOf(f, key.ID)
		f.clk.Add(24 * time.Hour)
		f.renew(key.ID, tokens.DeleteLater)
		require.False(t, bytes.Contains(dump(t, f, []string{key.ID}, "acme"), sealed))
	})
	t.Run("revoked by Undo", func(t *testing.T) {
		f := newFixture(t)
		c := f.issued()
		f.renew(c.KeyID, tokens.DeleteLater)
		sealed := sealedOf(f, c.KeyID)
		require.NoError(t, f.m.Undo(f.ctx, c.KeyID))
		rec := f.record(c.KeyID)
		require.Empty(t, rec.Link.Sealed)
		require.False(t, bytes.Contains(dump(t, f, []string{c.KeyID}, "acme"), sealed))
	})
	t.Run("expired and purged", func(t *testing.T) {
		f := newFixture(t)
		expired1, l1 := f.create("acme", "expires")
		expired2, l2 := f.create("other", "expires too")
		redeemed, l3 := f.create("acme", "redeemed")
		f.redeem(l3)
		sealed1, sealed2 := sealedOf(f, expired1.ID), sealedOf(f, expired2.ID)
		f.clk.Add(24*time.Hour - time.Second)
		pending, l4 := f.create("acme", "pending")

		n, err := f.m.PurgeExpired(f.ctx)
		require.NoError(t, err)
		require.Zero(t, n, "purged links that had not expired")
		f.clk.Add(time.Second)
		n, err = f.m.PurgeExpired(f.ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = f.m.PurgeExpired(f.ctx)
		require.NoError(t, err)
		require.Zero(t, n, "a second purge found work")

		data := dump(t, f, []string{expired1.ID, expired2.ID, redeemed.ID, pending.ID}, "acme", "other")
		require.False(t, bytes.Contains(data, sealed1))
		require.False(t, bytes.Contains(data, sealed2))
		for _, l := range []*tokens.ShareLink{l1, l2} {
			_, err := f.m.RedeemLink(f.ctx, l.URL)
			require.ErrorIs(t, err, tokens.ErrLinkExpired, "a purged link keeps its state")
		}
		_, err = f.m.RedeemLink(f.ctx, l3.URL)
		require.ErrorIs(t, err, tokens.ErrLinkUsed)
		require.NotEmpty(t, f.record(pending.ID).Link.Sealed)
		f.redeem(l4)
	})
}

func TestS3_TokensDifferingInOneCharacterAreRejected(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	body := c.Token[4 : 4+43]
	for i := range body {
		near := forgeToken("tok", replaceAt(body, i))
		require.True(t, wellFormedToken(near))
		f.rejects(c.KeyID, near, tokens.ErrInvalidCredentials)
		_, err := f.m.Verify(f.ctx, c.KeyID, near)
		require.NotErrorIs(t, err, tokens.ErrMalformedToken, "position %d", i)
	}
	// The prefix is part of the secret's digest too.
	f.rejects(c.KeyID, forgeToken("tak", body), tokens.ErrInvalidCredentials)
	f.rejects(c.KeyID, forgeToken("acme", body), tokens.ErrInvalidCredentials)
	f.verifies(c.KeyID, c.Token)
}

// flowSecrets runs a key through its whole life and returns every secret
// it met (tokens, link IDs, link URLs) and every error the Manager
// returned along the way.
func flowSecrets(t *testing.T) (secrets []string, errs []error) {
	f := newFixture(t)
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	key, link := f.create("acme", "erp-sync")
	secrets = append(secrets, linkID(t, link.URL), link.URL)
	creds := f.redeem(link)
	secrets = append(secrets, creds.Token)

	_, err := f.m.RedeemLink(f.ctx, link.URL)
	keep(err)
	_, err = f.m.RedeemLink(f.ctx, link.URL+"/")
	keep(err)
	_, err = f.m.RedeemLink(f.ctx, strings.Replace(link.URL, "https", "http", 1))
	keep(err)
	_, err = f.m.LinkStatus(f.ctx, link.URL+"x")
	keep(err)
	_, err = f.m.Verify(f.ctx, key.ID, creds.Token+"x")
	keep(err)
	_, err = f.m.Verify(f.ctx, key.ID, replaceAt(creds.Token, 10))
	keep(err)
	_, err = f.m.Verify(f.ctx, creds.Token, creds.Token)
	keep(err)
	_, err = f.m.Verify(f.ctx, "key_"+strings.Repeat("Z", 22), creds.Token)
	keep(err)
	_, err = f.m.Verify(f.ctx, key.ID, forgeToken("tok", creds.Token[4 : 4+43][1:]+"Q"))
	keep(err)

	next := f.renew(key.ID, tokens.DeleteLater)
	secrets = append(secrets, linkID(t, next.URL), next.URL)
	_, err = f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{})
	keep(err)
	c2 := f.redeem(next)
	secrets = append(secrets, c2.Token)
	_, err = f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{OldToken: tokens.DeleteNow})
	keep(err)
	_, err = f.m.Renew(f.ctx, key.ID, tokens.RenewOptions{OldToken: 7})
	keep(err)
	require.NoError(t, f.m.Deactivate(f.ctx, key.ID))
	_, err = f.m.Verify(f.ctx, key.ID, c2.Token)
	keep(err)
	require.NoError(t, f.m.Activate(f.ctx, key.ID))
	require.NoError(t, f.m.Undo(f.ctx, key.ID))
	keep(f.m.Undo(f.ctx, key.ID))
	keep(f.m.DeleteOld(f.ctx, key.ID))
	_, err = f.m.RedeemLink(f.ctx, next.URL)
	keep(err)

	third := f.renew(key.ID, tokens.DeleteNow)
	secrets = append(secrets, linkID(t, third.URL), third.URL)
	f.clk.Add(24 * time.Hour)
	_, err = f.m.RedeemLink(f.ctx, third.URL)
	keep(err)
	require.NoError(t, f.m.DeleteKey(f.ctx, key.ID))
	keep(f.m.DeleteKey(f.ctx, key.ID))
	_, err = f.m.Verify(f.ctx, key.ID, creds.Token)
	keep(err)
	_, err = f.m.Key(f.ctx, creds.Token)
	keep(err)
	_, err = f.m.RedeemLink(f.ctx, third.URL)
	keep(err)
	_, err = tokens.NewManager(f.mem, tokens.WithShareBaseURL(link.URL))
	keep(err)

	// A sealed token that does not open: the error names the key only.
	broken, brokenLink := f.create("acme", "broken")
	secrets = append(secrets, linkID(t, brokenLink.URL), brokenLink.URL, f.peek(broken.ID, brokenLink))
	rec := f.record(broken.ID)
	rec.Link.Sealed = append([]byte(nil), rec.Link.Sealed...)
	rec.Link.Sealed[len(rec.Link.Sealed)-1] ^= 1
	require.NoError(t, f.mem.UpdateKey(f.ctx, &rec))
	_, err = f.m.RedeemLink(f.ctx, brokenLink.URL)
	require.Error(t, err)
	keep(err)

	require.GreaterOrEqual(t, len(errs), 20)
	return secrets, errs
}

func TestS4_ErrorsCarryNoSecret(t *testing.T) {
	secrets, errs := flowSecrets(t)
	for _, err := range errs {
		for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			requireNoSecretIn(t, []byte(text), secrets, fmt.Sprintf("error %q", err.Error()))
		}
	}
}

func TestS4_FormattingRedactsSecrets(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	id := linkID(t, link.URL)
	creds := f.redeem(link)
	secrets := []string{creds.Token, creds.Token[4 : 4+43], id}

	values := map[string]any{
		"Credentials":           *creds,
		"*Credentials":          creds,
		"ShareLink":             *link,
		"*ShareLink":            link,
		"Key":                   *key,
		"*Key":                  key,
		"[]Credentials":         []tokens.Credentials{*creds},
		"[]ShareLink":           []tokens.ShareLink{*link},
		"map of Credentials":    map[string]tokens.Credentials{"c": *creds},
		"struct of Credentials": struct{ C tokens.Credentials }{*creds},
		"struct of *ShareLink":  struct{ L *tokens.ShareLink }{link},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			out := fmt.Sprintf(verb, v)
			for _, s := range secrets {
				require.NotContains(t, out, s, "%s printed with %s", name, verb)
			}
		}
	}
	out := fmt.Sprint(creds, link) + fmt.Sprintln(*creds, *link)
	for _, s := range secrets {
		require.NotContains(t, out, s)
	}
	require.Contains(t, fmt.Sprintf("%v", creds), creds.KeyID, "the key ID is no secret and helps debugging")

	// The fields themselves stay readable.
	require.True(t, wellFormedToken(creds.Token))
	require.True(t, strings.HasSuffix(link.URL, id))
}

func TestS4_StructuredLogsRedactSecrets(t *testing.T) {
	f := newFixture(t)
	key, link := f.create("acme", "erp-sync")
	id := linkID(t, link.URL)
	creds := f.redeem(link)
	next := f.renew(key.ID, tokens.DeleteLater)
	secrets := []string{creds.Token, creds.Token[4 : 4+43], id, linkID(t, next.URL)}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		log := slog.New(h)
		log.Info("issued", "creds", creds, "link", link, "next", next)
		log.Info("values", "creds", *creds, "link", *link, "key", key)
		log.Info("group", slog.Group("g", slog.Any("creds", creds), slog.Any("link", *next)))
		log.With("creds", creds).Info("with")
		log.Info("attrs", slog.Any("creds", creds), slog.Any("link", link))
	}
	out := buf.String()
	for _, s := range secrets {
		require.NotContains(t, out, s)
	}
	require.Contains(t, out, creds.KeyID)
	require.Contains(t, out, testBase)
}

func TestS5_LinkMustMatchTheBaseByteForByte(t *testing.T) {
	f := newFixture(t)
	_, link := f.create("acme", "erp-sync")
	id := linkID(t, link.URL)
	encoded := ""
	for i := range len(id) {
		encoded += fmt.Sprintf("%%%02X", id[i])
	}
	cases := map[string]string{
		"http scheme":                 "http://share.example.com/credentials/" + id,
		"uppercase scheme":            "HTTPS://share.example.com/credentials/" + id,
		"other scheme":                "ftp://share.example.com/credentials/" + id,
		"no scheme":                   "//share.example.com/credentials/" + id,
		"relative":                    "/credentials/" + id,
		"bare ID":                     id,
		"uppercase host":              "https://SHARE.example.com/credentials/" + id,
		"look-alike suffix":           "https://share.example.com.evil.com/credentials/" + id,
		"look-alike TLD":              "https://share.example.co/credentials/" + id,
		"look-alike prefix":           "https://evilshare.example.com/credentials/" + id,
		"trailing dot host":           "https://share.example.com./credentials/" + id,
		"cyrillic a (IDN homograph)":  "https://sh\u0430re.example.com/credentials/" + id,
		"punycode host":               "https://xn--shre-8cd.example.com/credentials/" + id,
		"fullwidth dot":               "https://share\uff0eexample.com/credentials/" + id,
		"userinfo before host":        "https://evil.com@share.example.com/credentials/" + id,
		"host as userinfo":            "https://share.example.com@evil.com/credentials/" + id,
		"user and password":           "https://user:pass@share.example.com/credentials/" + id,
		"default port":                "https://share.example.com:443/credentials/" + id,
		"other port":                  "https://share.example.com:8443/credentials/" + id,
		"empty port":                  "https://share.example.com:/credentials/" + id,
		"extra segment before":        "https://share.example.com/credentials/x/" + id,
		"extra segment after":         "https://share.example.com/credentials/" + id + "/x",
		"trailing slash":              "https://share.example.com/credentials/" + id + "/",
		"dot segment":                 "https://share.example.com/credentials/./" + id,
		"dot-dot segment":             "https://share.example.com/other/../credentials/" + id,
		"dot-dot after":               "https://share.example.com/credentials/" + id + "/..",
		"double slash before path":    "https://share.example.com//credentials/" + id,
		"double slash before ID":      "https://share.example.com/credentials//" + id,
		"backslash":                   "https://share.example.com/credentials\\" + id,
		"path case":                   "https://share.example.com/Credentials/" + id,
		"encoded path":                "https://share.example.com/%63redentials/" + id,
		"query":                       "https://share.example.com/credentials/" + id + "?a=b",
		"empty query":                 "https://share.example.com/credentials/" + id + "?",
		"query instead of path":       "https://share.example.com/credentials/?id=" + id,
		"fragment":                    "https://share.example.com/credentials/" + id + "#x",
		"empty fragment":              "https://share.example.com/credentials/" + id + "#",
		"ID in fragment":              "https://share.example.com/credentials/#" + id,
		"ID one short":                "https://share.example.com/credentials/" + id[:42],
		"ID one long":                 "https://share.example.com/credentials/" + id + "A",
		"ID twice":                    "https://share.example.com/credentials/" + id + id,
		"ID with dash":                "https://share.example.com/credentials/" + id[:42] + "-",
		"ID with underscore":          "https://share.example.com/credentials/" + id[:42] + "_",
		"ID with plus":                "https://share.example.com/credentials/" + id[:42] + "+",
		"ID with non-ASCII":           "https://share.example.com/credentials/" + id[:41] + "é",
		"ID with fullwidth digit":     "https://share.example.com/credentials/" + id[:40] + "\uff11",
		"one character percent-coded": "https://share.example.com/credentials/%" + fmt.Sprintf("%02X", id[0]) + id[1:],
		"ID percent-encoded":          "https://share.example.com/credentials/" + encoded,
		"leading space":               " " + link.URL,
		"trailing space":              link.URL + " ",
		"trailing newline":            link.URL + "\n",
		"trailing NUL":                link.URL + "\x00",
		"tab inside":                  "https://share.example.com/credentials/\t" + id,
		"empty":                       "",
		"base only":                   testBase,
	}
	for name, url := range cases {
		f.store.reset()
		creds, err := f.m.RedeemLink(f.ctx, url)
		require.ErrorIs(t, err, tokens.ErrInvalidLink, name)
		require.Nil(t, creds, name)
		_, err = f.m.LinkStatus(f.ctx, url)
		require.ErrorIs(t, err, tokens.ErrInvalidLink, name)
		require.Zero(t, f.store.calls.Load(), "%s: the store was consulted", name)
	}
	f.redeem(link)
}

func TestS5_LinksUnderALoopbackBaseWithPortAndPath(t *testing.T) {
	const base = "http://localhost:8080/x/"
	f := newFixture(t)
	m, err := tokens.NewManager(f.store, tokens.WithClock(f.clk), tokens.WithShareBaseURL(base))
	require.NoError(t, err)
	key, link, err := m.CreateKey(f.ctx, tokens.KeySpec{Name: "dev"})
	require.NoError(t, err)
	id, ok := strings.CutPrefix(link.URL, base)
	require.True(t, ok, "link not under the base")
	require.Regexp(t, linkIDPattern, id)
	for _, url := range []string{
		"http://localhost/x/" + id,
		"http://localhost:8081/x/" + id,
		"http://127.0.0.1:8080/x/" + id,
		"https://localhost:8080/x/" + id,
		"http://localhost:8080/" + id,
		"http://localhost:8080/x/y/" + id,
		testBase + id,
	} {
		_, err := m.RedeemLink(f.ctx, url)
		require.ErrorIs(t, err, tokens.ErrInvalidLink, url)
	}
	creds, err := m.RedeemLink(f.ctx, link.URL)
	require.NoError(t, err)
	require.Equal(t, key.ID, creds.KeyID)

	// Another Manager with another base does not accept this link.
	_, err = f.m.RedeemLink(f.ctx, link.URL)
	require.ErrorIs(t, err, tokens.ErrInvalidLink)
}

func TestS6_ShareBaseURLIsRequired(t *testing.T) {
	_, err := tokens.NewManager(memstore.New())
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	require.Contains(t, err.Error(), "WithShareBaseURL", "NewManager must say what is missing")
	_, err = tokens.NewManager(memstore.New(), tokens.WithAlertAfter(3))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	_, err = tokens.NewManager(nil, tokens.WithShareBaseURL(testBase))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
}

func TestS6_ShareBaseURLForm(t *testing.T) {
	accepted := []string{
		"https://share.example.com/credentials/",
		"https://share.example.com/",
		"https://share.example.com:8443/a/b/",
		"https://xn--shre-8cd.example.com/c/",
		"http://localhost/",
		"http://localhost:8080/x/",
		"http://127.0.0.1/",
		"http://127.0.0.2:3000/c/",
		"http://[::1]:9000/",
		"http://[::1]/c/",
	}
	refused := []string{
		"",
		"https://share.example.com/credentials",
		"https://share.example.com",
		"http://share.example.com/credentials/",
		"http://10.0.0.1/",
		"http://192.168.1.10:8080/x/",
		"http://localhost.evil.com/",
		"http://127.0.0.1.nip.io/",
		"ftp://share.example.com/credentials/",
		"file:///credentials/",
		"ws://localhost/",
		"HTTPS://share.example.com/credentials/",
		"https://SHARE.example.com/credentials/",
		"https://sh\u0430re.example.com/credentials/",
		"https://share.example.com/credentials/?x=1",
		"https://share.example.com/credentials/?",
		"https://share.example.com/credentials/#x",
		"https://share.example.com/credentials/#",
		"https://user@share.example.com/credentials/",
		"https://user:pass@share.example.com/credentials/",
		"https://share.example.com@evil.com/credentials/",
		"/credentials/",
		"credentials/",
		"share.example.com/credentials/",
		"//share.example.com/credentials/",
		"https:///credentials/",
		"https://share.example.com//credentials/",
		"https://share.example.com/./credentials/",
		"https://share.example.com/a/../credentials/",
		"https://share.example.com/cred entials/",
		" https://share.example.com/credentials/",
		"https://share.example.com/credentials/\n",
		"mailto:share@example.com/",
	}
	for _, base := range accepted {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(base))
		require.NoError(t, err, "%q", base)
	}
	for _, base := range refused {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(base))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "%q", base)
	}
}

func TestS6_LinkTTLBounds(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Nanosecond, -24 * time.Hour, 30*24*time.Hour + time.Nanosecond, 365 * 24 * time.Hour} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithLinkTTL(ttl))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "%s", ttl)
	}
	for _, ttl := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		f := newFixture(t, tokens.WithLinkTTL(ttl))
		_, link := f.create("acme", "ttl")
		requireTime(t, f.now().Add(ttl), link.ExpiresAt, "expiry with TTL "+ttl.String())
	}
}

func TestS6_OtherOptionsAreChecked(t *testing.T) {
	_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithClock(nil))
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
	_, err = tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), nil)
	require.ErrorIs(t, err, tokens.ErrInvalidOption)
}

func TestS6_PrefixesAreCheckedAndShapeTokensAndKeyIDs(t *testing.T) {
	bad := []string{"", "Acme", "ACME", "1acme", "_acme", "ac_me", "ac-me", "ac me", "acmé", strings.Repeat("a", 17), "a\x00"}
	for _, p := range bad {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithTokenPrefix(p))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "token prefix %q", p)
		_, err = tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), tokens.WithKeyIDPrefix(p))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "key ID prefix %q", p)
	}
	for _, p := range []string{"a", "acme", "ak2", strings.Repeat("z", 16)} {
		f := newFixture(t, tokens.WithTokenPrefix(p), tokens.WithKeyIDPrefix(p))
		key, link := f.create("acme", "prefixed")
		require.Regexp(t, "^"+p+"_[0-9A-Za-z]{22}$", key.ID)
		c := f.redeem(link)
		m := tokenPattern.FindStringSubmatch(c.Token)
		require.NotNil(t, m, "token with prefix %q", p)
		require.Equal(t, p, m[1])
		require.True(t, wellFormedToken(c.Token))
		f.verifies(key.ID, c.Token)
	}
	f := newFixture(t)
	key, _ := f.create("acme", "default")
	require.Regexp(t, "^"+tokens.DefaultKeyIDPrefix+"_[0-9A-Za-z]{22}$", key.ID)
}

func TestS6_TokensUnderAnOldPrefixKeepVerifying(t *testing.T) {
	f := newFixture(t, tokens.WithTokenPrefix("old"), tokens.WithKeyIDPrefix("oldkey"))
	c := f.issued()
	require.True(t, strings.HasPrefix(c.Token, "old_"))

	// The service restarts with new prefixes over the same database.
	f.m = f.manager(tokens.WithTokenPrefix("new"), tokens.WithKeyIDPrefix("newkey"))
	f.verifies(c.KeyID, c.Token)
	next := f.redeem(f.renew(c.KeyID, tokens.DeleteLater))
	require.True(t, strings.HasPrefix(next.Token, "new_"))
	require.Equal(t, c.KeyID, next.KeyID)
	f.verifies(c.KeyID, c.Token)
	f.verifies(c.KeyID, next.Token)
	key, _ := f.create("acme", "fresh")
	require.True(t, strings.HasPrefix(key.ID, "newkey_"))
}

func TestS6_InvalidRenewOptionChangesNothing(t *testing.T) {
	f := newFixture(t)
	c := f.issued()
	before := f.record(c.KeyID)
	for _, policy := range []tokens.OldTokenPolicy{2, -1, 100} {
		f.store.reset()
		link, err := f.m.Renew(f.ctx, c.KeyID, tokens.RenewOptions{OldToken: policy})
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "%d", int(policy))
		require.Nil(t, link)
		require.Zero(t, f.store.writes.Load())
		require.Equal(t, before, f.record(c.KeyID))
	}
	f.verifies(c.KeyID, c.Token)
	f.redeem(f.renew(c.KeyID, tokens.DeleteLater))
	f.verifies(c.KeyID, c.Token)
}

// TestS6_NonCanonicalShareBasesAreRefused covers bases that NewManager
// accepts although its own check promises a canonical form ("no escapes")
// or that give unusable links.
func TestS6_NonCanonicalShareBasesAreRefused(t *testing.T) {
	for _, base := range []string{
		"https://share.example.com/%63redentials/",
		"https://share.example.com/x%2Fy/",
		"https://share.example.com:/credentials/",
		"https://share.example.com:99999/credentials/",
		"https://share.example.com:0/credentials/",
		"https://share..example.com/credentials/",
	} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(base))
		require.ErrorIs(t, err, tokens.ErrInvalidOption, "%q", base)
	}
}

// TestS8_LinkNeedsTheSealingSecret shows that with a sealing secret the
// link ID alone no longer opens the sealed token: a Manager over the same
// store without the secret, or with another, cannot redeem the link, and
// leaves it pending for the Manager that has it.
func TestS8_LinkNeedsTheSealingSecret(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, tokens.MinSealingSecretLen)
	other := bytes.Repeat([]byte{8}, tokens.MinSealingSecretLen)
	f := newFixture(t, tokens.WithSealingSecret(secret))
	key, link := f.create("acme", "erp-sync")

	for name, opts := range map[string][]tokens.Option{
		"no secret":      nil,
		"another secret": {tokens.WithSealingSecret(other)},
	} {
		t.Run(name, func(t *testing.T) {
			creds, err := f.manager(opts...).RedeemLink(f.ctx, link.URL)
			require.ErrorIs(t, err, tokens.ErrLinkSealed)
			require.Nil(t, creds)
			require.NotContains(t, err.Error(), linkID(t, link.URL))
			require.Equal(t, tokens.LinkPending, f.key(key.ID).Link, "a failed redemption consumed the link")
		})
	}
	creds := f.redeem(link)
	f.verifies(creds.KeyID, creds.Token)
}

// TestS8_RotationKeepsLinksRedeemable shows the rotation: links sealed
// under a previous secret, or before any secret was set, still redeem; new
// links are sealed under the current secret only.
func TestS8_RotationKeepsLinksRedeemable(t *testing.T) {
	first := bytes.Repeat([]byte{1}, tokens.MinSealingSecretLen)
	second := bytes.Repeat([]byte{2}, tokens.MinSealingSecretLen+16)
	f := newFixture(t)
	_, beforeAnySecret := f.create("acme", "made without a secret")
	_, underFirst, err := f.manager(tokens.WithSealingSecret(first)).CreateKey(f.ctx, tokens.KeySpec{Account: "acme", Name: "first"})
	require.NoError(t, err)

	rotated := f.manager(tokens.WithSealingSecret(second, first))
	_, underSecond, err := rotated.CreateKey(f.ctx, tokens.KeySpec{Account: "acme", Name: "second"})
	require.NoError(t, err)
	_, err = f.manager(tokens.WithSealingSecret(first)).RedeemLink(f.ctx, underSecond.URL)
	require.ErrorIs(t, err, tokens.ErrLinkSealed, "a new link opened under the previous secret")

	for _, link := range []*tokens.ShareLink{beforeAnySecret, underFirst, underSecond} {
		creds, err := rotated.RedeemLink(f.ctx, link.URL)
		require.NoError(t, err)
		f.verifies(creds.KeyID, creds.Token)
	}
}

func TestS8_SealingSecretsAreChecked(t *testing.T) {
	long := bytes.Repeat([]byte{1}, tokens.MinSealingSecretLen)
	for name, opt := range map[string]tokens.Option{
		"nil current":    tokens.WithSealingSecret(nil),
		"short current":  tokens.WithSealingSecret(long[:tokens.MinSealingSecretLen-1]),
		"short previous": tokens.WithSealingSecret(long, []byte("too short")),
	} {
		_, err := tokens.NewManager(memstore.New(), tokens.WithShareBaseURL(testBase), opt)
		require.ErrorIs(t, err, tokens.ErrInvalidOption, name)
	}
	// The Manager keeps its own copy: changing the caller's slice later
	// changes nothing.
	secret := bytes.Repeat([]byte{3}, tokens.MinSealingSecretLen)
	f := newFixture(t, tokens.WithSealingSecret(secret))
	_, link := f.create("acme", "erp-sync")
	secret[0] ^= 0xff
	f.redeem(link)
}

// TestS9_TextThatSpoofsTheScreenIsRefused covers names and accounts that
// would move the cursor, break a line or reorder an admin screen, and the
// boundaries of the refused ranges.
func TestS9_TextThatSpoofsTheScreenIsRefused(t *testing.T) {
	refused := map[string]string{
		"only spaces":   "   ",
		"only tabs":     "\t\t",
		"ESC":           "erp\x1b[31msync",
		"CR":            "erp\rsync",
		"LF":            "erp\nsync",
		"TAB":           "erp\tsync",
		"DEL":           "erp\x7fsync",
		"C1 NEL":        "erp\u0085sync",
		"LRE U+202A":    "erp\u202async",
		"RLO U+202E":    "cod.exe\u202etxt",
		"LRI U+2066":    "erp\u2066sync",
		"PDI U+2069":    "erp\u2069sync",
		"invalid UTF-8": "erp\xffsync",
		"NUL":           "erp\x00sync",
	}
	accepted := []string{
		"erp sync",
		"U+2029 paragraph separator\u2029", // Zp, not Cc
		"U+2065\u2065 and U+206A\u206a and U+2029\u2029 and U+202F\u202f",
		"zero width joiner 👩\u200d💻",
		"Synchronisation ERP — 会計",
	}
	f := newFixture(t)
	for name, text := range refused {
		for _, spec := range []tokens.KeySpec{{Account: "acme", Name: text}, {Account: text, Name: "erp"}} {
			if spec.Account == "   " {
				continue // an account may be blank; only a name may not
			}
			_, _, err := f.m.CreateKey(f.ctx, spec)
			require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "%s: %+q", name, spec)
		}
		if text != "   " {
			keys, err := f.m.Keys(f.ctx, text)
			require.ErrorIs(t, err, tokens.ErrInvalidKeySpec, "Keys(%+q)", text)
			require.Nil(t, keys)
		}
	}
	require.Zero(t, f.store.writes.Load(), "refused text reached the store")
	for _, text := range accepted {
		key, _, err := f.m.CreateKey(f.ctx, tokens.KeySpec{Account: text, Name: text})
		require.NoError(t, err, "%+q", text)
		keys, err := f.m.Keys(f.ctx, text)
		require.NoError(t, err)
		require.Len(t, keys, 1)
		require.Equal(t, key.ID, keys[0].ID)
	}
}
