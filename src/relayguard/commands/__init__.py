"""Subcommands of the `relayguard` CLI, one module each."""
