"""A SOFTWARE security key for tests, demos and operator training.

It speaks real CTAP 2.1 over python-fido2's own CTAPHID code (in-process) and
over the real PC/SC stack (pcscd + the vpcd reader driver). It is not a
hardware key: its attestation root is generated per state file and is never
trusted unless a policy names it explicitly.
"""

SOFTWARE_KEY_LABEL = "keyadmin SOFTWARE key (not hardware; for tests and training)"
