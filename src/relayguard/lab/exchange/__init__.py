"""The Exchange twins: state documents, SMTP models and listener, payload ops, patch packages.

state/store/profiles say what a twin *is*; smtp55/smtp_modern (pure) and smtp_twin (aiosmtpd)
how it answers SMTP; oplib/ops/ops55/ops_modern how it answers relayguard's payloads over the
WinRM endpoint of `relayguard.lab.wsman`; packages the stand-in hotfixes it installs.
"""
