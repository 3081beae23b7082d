"""A local stand-in for the Dapr runtime (daprd): its HTTP and gRPC APIs, in Python."""
