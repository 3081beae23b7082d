"""job_orchestrator."""
