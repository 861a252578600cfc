"""Imported first by the fork server that local workers are forked from: the workers' quiet library
settings go into its environment before any library reads them (transformers and huggingface_hub read
theirs once, at import), so every worker forked from it starts quiet, as a spawned worker does."""

from chatspace.logs import quiet_worker_environment

quiet_worker_environment()
