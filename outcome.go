package main

// outcome.go names how an attempt to deliver a message can end (SPEC §5)
// and, next to each outcome, everything that follows from it. Metrics, the
// dashboard, the log and the sender loop all read this one table.

import (
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Outcome is how one attempt to deliver a message ended.
type Outcome string

// The attempt outcomes of SPEC §5; what follows from each is in outcomes.
const (
	OutcomeSent            Outcome = "sent"
	OutcomeMessageappError Outcome = "messageapp_error"
	OutcomeUnreachable     Outcome = "unreachable"
	OutcomeTimeout         Outcome = "timeout"
	OutcomeBreakerOpen     Outcome = "breaker_open"
)

// outcomeRule is what follows from an outcome. Exactly one of waits and
// final says what becomes of the message; retryable may defer final.
type outcomeRule struct {
	outcome   Outcome
	level     zerolog.Level // of its log line
	retryable bool          // another attempt follows, up to MAX_ATTEMPTS
	final     Status        // what the message ends as, once not retried
	waits     bool          // not an attempt: the message waits for the circuit
	text      string        // its log message, its own; {timeout} is the deadline
}

// outcomes is every outcome, in the order reports show them. A timeout is
// final although it failed: messageapp may have delivered it, and courier
// must not send it twice.
var outcomes = [...]outcomeRule{
	{OutcomeSent, zerolog.InfoLevel, false, StatusSent, false, "delivered to messageapp"},
	{OutcomeMessageappError, zerolog.ErrorLevel, true, StatusFailed, false, "messageapp answered with an error"},
	{OutcomeUnreachable, zerolog.ErrorLevel, true, StatusFailed, false, "messageapp unreachable: nothing was delivered"},
	{OutcomeTimeout, zerolog.ErrorLevel, false, StatusTimeout, false, "messageapp did not answer within {timeout}: gave up"},
	{OutcomeBreakerOpen, zerolog.WarnLevel, false, "", true, "circuit open: not sent to messageapp"},
}

// outcomeKinds lists the outcomes, in the order of outcomes.
var outcomeKinds = func() (kinds [len(outcomes)]Outcome) {
	for i, r := range outcomes {
		kinds[i] = r.outcome
	}
	return kinds
}()

// rule is what follows from o. An outcome without a row is a programming
// error, and fails loudly rather than leave a message in limbo.
func (o Outcome) rule() outcomeRule {
	for _, r := range outcomes {
		if r.outcome == o {
			return r
		}
	}
	panic(fmt.Sprintf("outcome %q has no row in outcomes", o))
}

// outcomeTexts are the log messages of the outcomes with the deadline
// filled in, so that a person reading the log tells the kinds apart
// without reading fields.
func outcomeTexts(timeout time.Duration) map[Outcome]string {
	texts := make(map[Outcome]string, len(outcomes))
	for _, r := range outcomes {
		texts[r.outcome] = strings.ReplaceAll(r.text, "{timeout}", timeout.String())
	}
	return texts
}
