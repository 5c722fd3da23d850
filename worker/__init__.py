"""baton's worker: the leg loop, run state, task processing, CLI and local runtime."""
