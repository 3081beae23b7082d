"""microservice_x."""
