package tokenhttp

import (
	"errors"
	"fmt"
	"net/http"
)

// An Option configures Authenticate or NewLinkHandler. WithErrorReporter
// applies to both; each other option says which it applies to, and the
// other constructor refuses it with an error.
type Option func(*settings) error

// settings are what the options set, for the constructor named target.
type settings struct {
	target string // the constructor: "Authenticate" or "NewLinkHandler"

	report func(r *http.Request, err error)

	keyIDHeader string
	tokenHeader string
	bearer      bool
	onError     ErrorHandler
}

const (
	forAuthenticate = "Authenticate"
	forLinkHandler  = "NewLinkHandler"
)

// apply runs opts for the constructor named target.
func apply(target string, opts []Option) (*settings, error) {
	s := &settings{
		target:      target,
		report:      func(*http.Request, error) {},
		keyIDHeader: DefaultKeyIDHeader,
		tokenHeader: DefaultTokenHeader,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("tokenhttp: %s: nil option", target)
		}
		if err := opt(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// only refuses option name unless the constructor is target.
func (s *settings) only(name, target string) error {
	if s.target != target {
		return fmt.Errorf("tokenhttp: %s: %s applies to %s only", s.target, name, target)
	}
	return nil
}

// WithErrorReporter makes Authenticate and the link pages call f with each
// error that is not the client's doing and makes them answer 500, such as
// a failing store, for the application to log or count. The error never
// holds a secret. The default ignores such errors: the package never logs.
func WithErrorReporter(f func(r *http.Request, err error)) Option {
	return func(s *settings) error {
		if f == nil {
			return errors.New("tokenhttp: WithErrorReporter: function is nil")
		}
		s.report = f
		return nil
	}
}
