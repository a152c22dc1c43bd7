"""The node daemon's runtime: configuration, hardware set-up, key outbox and the daemon itself."""
