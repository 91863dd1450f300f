package taskgrove

import "google.golang.org/protobuf/types/known/structpb"

// Inputs converts a map of JSON-like values into a google.protobuf.Struct for Task.Inputs.
func Inputs(values map[string]interface{}) (*structpb.Struct, error) {
	return structpb.NewStruct(values)
}
