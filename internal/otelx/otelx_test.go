package otelx

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/zkrecipes/zkrecipes/resilience"
)

func TestOutcomeAndErrorType(t *testing.T) {
	errLocked := errors.New("lock: held")
	errMine := errors.New("pkg: mine")
	own := []Class{{errMine, "mine"}}
	for _, c := range []struct {
		err           error
		outcome, typ  string
		resultHasType bool
	}{
		{nil, OutcomeOK, "", false},
		{context.Canceled, OutcomeCanceled, "canceled", false},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), OutcomeCanceled, "timeout", false},
		{fmt.Errorf("x: %w", errLocked), OutcomeRefused, "_OTHER", false},
		{fmt.Errorf("x: %w", resilience.ErrSessionLost), OutcomeError, "session_lost", true},
		{fmt.Errorf("x: %w: %w", errMine, resilience.ErrClosed), OutcomeError, "mine", true},
		{errors.New("strange"), OutcomeError, "_OTHER", true},
	} {
		if got := Outcome(c.err, errLocked); got != c.outcome {
			t.Errorf("Outcome(%v) = %q, want %q", c.err, got, c.outcome)
		}
		if got := ErrorType(c.err, own...); got != c.typ {
			t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.typ)
		}
		attrs := Result(c.err, own, errLocked)
		hasType := false
		for _, a := range attrs {
			if a.Key == KeyErrorType {
				hasType = true
			}
		}
		if attrs[0].Key != KeyOutcome || attrs[0].Value.AsString() != c.outcome || hasType != c.resultHasType {
			t.Errorf("Result(%v) = %v, want outcome %q and error.type present %v", c.err, attrs, c.outcome, c.resultHasType)
		}
	}
}
