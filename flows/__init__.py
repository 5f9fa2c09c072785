"""dramaforge orchestration: the CLI and the Prefect flows."""
