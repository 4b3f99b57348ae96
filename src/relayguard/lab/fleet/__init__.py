"""A lab fleet: planning which hosts, the lab directory and manifest, the CA, the inventory,
the daemon serving the twins, and `relayguard lab up/down/status` (command, control)."""
