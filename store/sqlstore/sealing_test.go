package sqlstore_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/internal/testenv"
)

// TestS8_DatabaseFilesPlusLinkURLOpenNothing plays the attacker of issue 7
// item 2: the raw files of a SQLite database (main file and -wal, as a
// backup or a stolen disk has them) and the URLs of its links, one of them
// used (from a chat or browser history), one still pending. The attacker
// knows the sealing format and tries every window of the files as a sealed
// token under the key each link ID gives.
//
// Without a sealing secret the used link's token is still in the files
// after the wipe, in the -wal frame its key was created in, and opens: the
// attack works. With a secret, the same files open nothing, while a holder
// of the secret finds the sealed copies (so the scan does look at them).
func TestS8_DatabaseFilesPlusLinkURLOpenNothing(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5e}, tokens.MinSealingSecretLen)
	for _, withSecret := range []bool{false, true} {
		name := "no secret"
		if withSecret {
			name = "secret"
		}
		t.Run(name, func(t *testing.T) {
			b := backends[0]
			dsn := b.NewDSN(t)
			st := migrated(t, open(t, b.Driver, dsn))
			opts := []tokens.Option{tokens.WithShareBaseURL(shareBase)}
			if withSecret {
				opts = append(opts, tokens.WithSealingSecret(secret))
			}
			m, err := tokens.NewManager(st, opts...)
			require.NoError(t, err)
			ctx := t.Context()
			used, usedLink, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "used"})
			require.NoError(t, err)
			creds, err := m.RedeemLink(ctx, usedLink.URL)
			require.NoError(t, err)
			pending, pendingLink, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "pending"})
			require.NoError(t, err)

			files := sqliteFiles(t, dsn)
			links := []stolenLink{
				{keyID: used.ID, linkID: strings.TrimPrefix(usedLink.URL, shareBase)},
				{keyID: pending.ID, linkID: strings.TrimPrefix(pendingLink.URL, shareBase)},
			}
			opened := openSealedCopies(files, links, nil)
			if !withSecret {
				require.Contains(t, opened, creds.Token,
					"the used link's token is not in the files: the scan proves nothing")
				return
			}
			require.Empty(t, opened, "database files plus link URLs opened a token without the secret")
			require.NotEmpty(t, openSealedCopies(files, links, secret),
				"the secret's holder finds no sealed copy: the scan proves nothing")

			// The library itself, over a copy of the database without the
			// secret, does no better.
			stolen, err := tokens.NewManager(st, tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			_, err = stolen.RedeemLink(ctx, pendingLink.URL)
			require.ErrorIs(t, err, tokens.ErrLinkSealed)
			status, err := m.LinkStatus(ctx, pendingLink.URL)
			require.NoError(t, err)
			require.Equal(t, tokens.LinkPending, status.State)
		})
	}
}

type stolenLink struct{ keyID, linkID string }

// sealedLen is the length of a sealed default token: a 12-byte nonce, the
// 53-byte token and GCM's 16-byte tag.
const sealedLen = 12 + len("tok_") + 43 + 6 + 16

// openSealedCopies tries every sealedLen window of every file as a token
// sealed for each link, under the key the link ID and secret (nil: none)
// give, and returns the tokens that opened.
func openSealedCopies(files map[string][]byte, links []stolenLink, secret []byte) []string {
	var opened []string
	for _, l := range links {
		label := "keyrenew/tokens link seal v1"
		if secret != nil {
			label = "keyrenew/tokens link seal with secret v2"
		}
		key, err := hkdf.Key(sha256.New, []byte(l.linkID), secret, label, 32)
		if err != nil {
			panic(err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			panic(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			panic(err)
		}
		aad := []byte("keyrenew/tokens sealed token v1 " + l.keyID)
		for _, data := range files {
			for i := 0; i+sealedLen <= len(data); i++ {
				w := data[i : i+sealedLen]
				if plain, err := aead.Open(nil, w[:12], w[12:], aad); err == nil {
					opened = append(opened, string(plain))
				}
			}
		}
	}
	return opened
}

// TestS8_SecureDeleteAndCheckpointMakeTheWipeReal shows what SQLite itself
// offers without a secret: after a TRUNCATE checkpoint that follows the
// redemption, the used link's sealed token is gone from the files (the
// -wal frames that held it are dropped; _secure_delete=on zeroes freed
// cells of the main file). Backups and copies taken before the checkpoint
// still hold it: the secret is the answer there.
func TestS8_SecureDeleteAndCheckpointMakeTheWipeReal(t *testing.T) {
	for _, v := range []struct{ name, driver, params string }{
		{"sqlite", "sqlite3", testenv.SQLiteParams + "&_secure_delete=on"},
		// modernc.org/sqlite ignores _secure_delete: it takes the pragma
		// as _pragma.
		{"sqlite_modernc", "sqlite", testenv.ModerncSQLiteParams + "&_pragma=secure_delete(on)"},
	} {
		t.Run(v.name, func(t *testing.T) {
			dsn := testenv.SQLite(v.params)(t)
			db := open(t, v.driver, dsn)
			m, err := tokens.NewManager(migrated(t, db), tokens.WithShareBaseURL(shareBase))
			require.NoError(t, err)
			ctx := t.Context()
			key, link, err := m.CreateKey(ctx, tokens.KeySpec{Account: "acme", Name: "used"})
			require.NoError(t, err)
			creds, err := m.RedeemLink(ctx, link.URL)
			require.NoError(t, err)
			stolen := []stolenLink{{keyID: key.ID, linkID: strings.TrimPrefix(link.URL, shareBase)}}
			require.Contains(t, openSealedCopies(sqliteFiles(t, dsn), stolen, nil), creds.Token,
				"before the checkpoint the -wal still holds the sealed token")

			_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
			require.NoError(t, err)
			require.Empty(t, openSealedCopies(sqliteFiles(t, dsn), stolen, nil))
		})
	}
}
