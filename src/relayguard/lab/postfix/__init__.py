"""Real, isolated Postfix instances: their files (config), named kinds of server (profiles),
and their life cycle (instance)."""
