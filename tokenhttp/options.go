package tokenhttp

import (
	"errors"
	"net/http"
)

// An AuthOption configures Authenticate: WithKeyIDHeader, WithTokenHeader,
// WithBearer, WithBearerToken, WithErrorHandler and WithErrorReporter.
// Each handler of the package has an option type of its own, so that an
// option given to a handler it does not apply to is a compile error, not a
// surprise at run time.
type AuthOption interface {
	applyAuth(*authSettings) error
}

// A LinkOption configures NewLinkHandler: WithErrorReporter.
type LinkOption interface {
	applyLink(*linkSettings) error
}

// An Option applies to every handler of the package: it is an AuthOption,
// a LinkOption, a ScopeOption and a ScanOption alike. WithErrorReporter returns one.
type Option struct {
	apply func(*shared) error
}

// shared are the settings that every handler has.
type shared struct {
	report func(r *http.Request, err error)
}

func newShared() shared {
	return shared{report: func(*http.Request, error) {}}
}

func (o Option) applyShared(s *shared) error {
	if o.apply == nil {
		return errors.New("tokenhttp: zero Option; use WithErrorReporter")
	}
	return o.apply(s)
}

func (o Option) applyAuth(s *authSettings) error { return o.applyShared(&s.shared) }
func (o Option) applyLink(s *linkSettings) error { return o.applyShared(&s.shared) }

// authOption is an option that only Authenticate takes.
type authOption func(*authSettings) error

func (o authOption) applyAuth(s *authSettings) error { return o(s) }

// linkSettings are what the LinkOptions set.
type linkSettings struct {
	shared
}

func applyLink(opts []LinkOption) (*linkSettings, error) {
	s := &linkSettings{shared: newShared()}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("tokenhttp: NewLinkHandler: nil option")
		}
		if err := opt.applyLink(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// WithErrorReporter makes Authenticate, RequireScopes, the link pages and
// the secret scanning handler call f with each error that is not the
// client's doing and makes them answer 500 (503 for the scanner's keys),
// such as a failing store, for the application to log or count. The error never holds a secret. The
// default ignores such errors: the package never logs.
func WithErrorReporter(f func(r *http.Request, err error)) Option {
	return Option{apply: func(s *shared) error {
		if f == nil {
			return errors.New("tokenhttp: WithErrorReporter: function is nil")
		}
		s.report = f
		return nil
	}}
}
