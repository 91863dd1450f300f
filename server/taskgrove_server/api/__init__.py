"""The gRPC layer: servicers, conversions and the mapping of domain errors to status."""
