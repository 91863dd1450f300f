// Package taskgrove is a thin Go client for the taskgrove TaskService.
//
// Dial connects (address, token and TLS files default to the TASKGROVE_* environment
// variables), the generated TaskServiceClient is exposed as Client.Tasks, FromError turns
// an RPC error into a typed *Error, and Watch streams events, resuming after the last
// delivered sequence when the server becomes unavailable.
package taskgrove
