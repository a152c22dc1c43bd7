"""Subcommands of the `qkdnode` console script, one module each (see `node.cli`)."""
