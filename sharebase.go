package tokens

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// shareBase is the base of share links (S5, S6): checked once by
// newShareBase, it makes link URLs and takes them apart again. A link is
// the base followed by one link ID, and nothing else.
type shareBase string

// newShareBase checks base (S6): an absolute https URL ending in "/", in
// canonical form, with no user info, query or fragment; http only for a
// loopback host, for development.
func newShareBase(base string) (shareBase, error) {
	if err := checkShareBase(base); err != nil {
		return "", err
	}
	return shareBase(base), nil
}

// url is the link of linkID.
func (b shareBase) url(linkID string) string {
	return string(b) + linkID
}

// linkID returns the link ID of url, which must be the base, byte for
// byte, followed by exactly one well-formed link ID (S5). Any other
// scheme, host, port, path, query or fragment fails that test.
func (b shareBase) linkID(url string) (string, error) {
	id, ok := strings.CutPrefix(url, string(b))
	if !ok || len(id) != linkIDLen || !isBase62(id) {
		return "", ErrInvalidLink
	}
	return id, nil
}

// checkShareBase applies S6 to base: each check of shareBaseChecks in
// turn, the first that fails saying why.
func checkShareBase(base string) error {
	if base == "" {
		return invalidOption("WithShareBaseURL: a base URL is required, such as https://share.example.com/credentials/")
	}
	u, err := url.Parse(base)
	if err != nil {
		return invalidOption("WithShareBaseURL: not a URL")
	}
	for _, check := range shareBaseChecks {
		if why := check(base, u); why != "" {
			return invalidOption("WithShareBaseURL: " + why)
		}
	}
	return nil
}

// shareBaseChecks are the checks of a share base, in order: each returns
// why base (parsed as u) is refused, or "" if it passes.
var shareBaseChecks = []func(base string, u *url.URL) string{
	noUserInfo,
	noQueryOrFragment,
	absoluteWithHost,
	endsWithSlash,
	canonicalForm,
	noDotSegments,
	plainHost,
	portInRange,
	httpsOrLoopback,
}

func noUserInfo(base string, u *url.URL) string {
	if u.User != nil || strings.Contains(base, "@") {
		return "user info is not allowed"
	}
	return ""
}

func noQueryOrFragment(base string, u *url.URL) string {
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(base, "?#") {
		return "query and fragment are not allowed"
	}
	return ""
}

func absoluteWithHost(_ string, u *url.URL) string {
	if u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL with a host"
	}
	return ""
}

func endsWithSlash(base string, _ *url.URL) string {
	if !strings.HasSuffix(base, "/") {
		return `must end with "/"`
	}
	return ""
}

// canonicalForm: a link must match the base byte for byte (S5), so the
// base must be written the one way url.Parse gives it back.
func canonicalForm(base string, u *url.URL) string {
	if base != u.Scheme+"://"+u.Host+u.Path || !plainPath(u.Path) {
		return "must be in canonical form: lowercase scheme and host, a path of letters, digits and -._~ only"
	}
	return ""
}

func noDotSegments(_ string, u *url.URL) string {
	if strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") {
		return "must not contain empty or dot path segments"
	}
	return ""
}

// plainHost refuses look-alike hosts: an international name must be
// given in its punycode form.
func plainHost(_ string, u *url.URL) string {
	if !asciiHost(u.Hostname()) {
		return "host must be lowercase ASCII with no empty labels (use the punycode form of an international name)"
	}
	return ""
}

func portInRange(_ string, u *url.URL) string {
	if !validPort(u) {
		return "port must be a number from 1 to 65535"
	}
	return ""
}

func httpsOrLoopback(_ string, u *url.URL) string {
	switch {
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return "http is allowed only for loopback hosts; use https"
	default:
		return "scheme must be https"
	}
}

func asciiHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return true
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func plainPath(path string) bool {
	for i := 0; i < len(path); i++ {
		if c := path[i]; base62Index[c] < 0 && !strings.ContainsRune("/-._~", rune(c)) {
			return false
		}
	}
	return true
}

// validPort accepts no port, or one from 1 to 65535; u.Port() alone lets
// "host:" and "host:99999" through.
func validPort(u *url.URL) bool {
	if !strings.Contains(strings.TrimPrefix(u.Host, "["+u.Hostname()+"]"), ":") {
		return true
	}
	port, err := strconv.Atoi(u.Port())
	return err == nil && port >= 1 && port <= 65535 && u.Port()[0] != '0'
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
