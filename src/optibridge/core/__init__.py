"""Foundation every layer may import: settings, errors, logging, the clock, secrets, states, telemetry."""
