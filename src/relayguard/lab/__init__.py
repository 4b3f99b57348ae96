"""The lab: test equipment — emulated Exchange hosts and real Postfix instances."""
