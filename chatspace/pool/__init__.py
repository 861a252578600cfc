"""The worker pool: supervisor, executor-independent worker loop, and executors (local processes; Ray)."""
