package tokens

import "time"

// Clock tells the Manager the time. *clock.Mock from
// github.com/benbjohnson/clock satisfies it, so tests can move time on
// without sleeping.
type Clock interface {
	Now() time.Time
}

// systemClock is the default Clock. It is the only place in the package
// that reads the wall clock (R12).
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
