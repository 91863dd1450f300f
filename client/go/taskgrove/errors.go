package taskgrove

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FieldViolation is one invalid field of a request (from google.rpc.BadRequest).
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a taskgrove RPC error: its gRPC code, its stable reason (a
// taskgrove.v1.ErrorReason name, from google.rpc.ErrorInfo), metadata and field violations.
type Error struct {
	Code            codes.Code
	Message         string
	Reason          string
	Domain          string
	Metadata        map[string]string
	FieldViolations []FieldViolation
	cause           error
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("taskgrove: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("taskgrove: %s: %s", e.Code, e.Message)
}

// Unwrap returns the original gRPC error.
func (e *Error) Unwrap() error { return e.cause }

// FromError converts an RPC error into *Error; nil stays nil, and an error that is not
// a gRPC status gives code Unknown.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return e
	}
	st, _ := status.FromError(err)
	e := &Error{Code: st.Code(), Message: st.Message(), Metadata: map[string]string{}, cause: err}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain = d.GetReason(), d.GetDomain()
			for k, v := range d.GetMetadata() {
				e.Metadata[k] = v
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	return e
}
