"""Hardware-in-the-loop fixtures: simulated instruments, protocol emulators and the pytest plugin."""
