"""Real, isolated Sendmail instances (Debian's sendmail-bin and sendmail-cf, unpacked): their
m4 configuration (config), named kinds of server (profiles), and their life cycle (instance)."""
