"""relayguard: find and close open SMTP relays across a fleet of mail servers."""

__version__ = "0.1.0"
