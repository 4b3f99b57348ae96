"""Real, isolated Exim instances (Debian's exim4-daemon-light, unpacked): their configuration
file (config), named kinds of server (profiles), and their life cycle (instance)."""
