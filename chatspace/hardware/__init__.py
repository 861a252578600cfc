"""The machine a worker runs on: devices (discovery, labels), GPU telemetry and the CPU's features."""
