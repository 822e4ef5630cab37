package service

import (
	"errors"
	"fmt"
	"time"
)

// Error codes carried in replies. They never change meaning; new codes may
// be added (an unknown code is treated as an application error).
const (
	CodeUnknownService     = "unknown_service"     // no such service on the node
	CodeUnknownMethod      = "unknown_method"      // the service has no such method
	CodeUnsupportedVersion = "unsupported_version" // envelope version too new
	CodeBadRequest         = "bad_request"         // malformed envelope or payload
	CodeTooLarge           = "too_large"           // over the size limit
	CodeOverloaded         = "overloaded"          // a resource the request needs is over its limit
	CodeUnavailable        = "unavailable"         // cannot be served right now (no quorum, ownership moving); retried
	CodeDeadlineExceeded   = "deadline_exceeded"   // the caller's deadline passed before the work started
	CodeApp                = "app"                 // the handler failed; never retried
	CodeInternal           = "internal"            // the handler panicked or the node is shutting down
)

// Error is a typed failure carried in a Reply. Compare with errors.Is
// against the sentinels below, or read Code.
type Error struct {
	Code         string `json:"code"`
	Message      string `json:"msg"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	Resource     string `json:"resource,omitempty"`
}

func (e *Error) Error() string {
	s := "service: " + e.Code
	if e.Resource != "" {
		s += " (" + e.Resource + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// RetryAfter is the server's hint for when to try again (overload only).
func (e *Error) RetryAfter() time.Duration { return time.Duration(e.RetryAfterMs) * time.Millisecond }

// Is makes errors.Is(err, ErrOverloaded) and friends work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrUnknownService     = &Error{Code: CodeUnknownService}
	ErrUnknownMethod      = &Error{Code: CodeUnknownMethod}
	ErrUnsupportedVersion = &Error{Code: CodeUnsupportedVersion}
	ErrBadRequest         = &Error{Code: CodeBadRequest}
	ErrTooLarge           = &Error{Code: CodeTooLarge}
	ErrOverloaded         = &Error{Code: CodeOverloaded}
	ErrUnavailable        = &Error{Code: CodeUnavailable}
	ErrDeadlineExceeded   = &Error{Code: CodeDeadlineExceeded}
	ErrApp                = &Error{Code: CodeApp}
	ErrInternal           = &Error{Code: CodeInternal}
)

// Overloaded builds the refusal for a resource over its limit.
func Overloaded(resource string, retryAfter time.Duration) *Error {
	ms := retryAfter.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return &Error{Code: CodeOverloaded, Resource: resource, RetryAfterMs: ms,
		Message: fmt.Sprintf("resource %q is at its limit; retry after %v", resource, retryAfter.Round(time.Millisecond))}
}

// Unavailable builds a retryable refusal: the request cannot be served now
// (no quorum reachable, the key's owner is changing) but may be soon.
func Unavailable(retryAfter time.Duration, format string, a ...any) *Error {
	ms := retryAfter.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return &Error{Code: CodeUnavailable, RetryAfterMs: ms, Message: fmt.Sprintf(format, a...)}
}

// AppError is returned by handlers for failures of the application's own
// (not found, invalid input for the business rules, …). It travels to the
// caller as CodeApp with this message and is never retried.
func AppError(format string, a ...any) error {
	return &Error{Code: CodeApp, Message: fmt.Sprintf(format, a...)}
}

// toError turns a handler's error into a wire error.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeApp, Message: err.Error()}
}

// Retryable reports whether a failed call may be tried again: overloads,
// unroutable messages and timeouts yes; application errors, bad requests and
// unknown services, methods or versions never.
func Retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == CodeOverloaded || e.Code == CodeUnavailable
	}
	return true // transport-level: timeouts, undeliverable, owner changes
}
