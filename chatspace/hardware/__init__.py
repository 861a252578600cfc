"""The machine a worker runs on: devices (discovery, labels) and GPU telemetry."""
