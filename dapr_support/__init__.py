"""What both services need around the official Dapr SDK and the SDK does not offer."""
