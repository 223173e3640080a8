"""Talking to keys through python-fido2: discovery, sessions, ceremonies."""
