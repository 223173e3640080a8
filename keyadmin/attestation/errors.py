"""Errors raised by keyadmin.attestation.

Verification raises; it never returns False. Every class carries a ``reason``
(a precise sentence) and, where it helps, the data that led to it.

    AttestationError                      base of everything below
    +-- AttestationMalformed             the bytes do not parse (CBOR, authData, JSON,
    |                                    certificate DER, statement shape)
    +-- AttestationUnsupported           a format or algorithm keyadmin does not verify
    +-- AttestationInvalid               parses, but a signature, nonce, key or
    |   |                                certificate requirement of the format fails
    |   +-- AaguidMismatch               certificate AAGUID != authenticator data AAGUID
    +-- AttestationUntrusted             statement is valid, but no path to a trust
                                         anchor at the stated time (no anchors, expired,
                                         basicConstraints / pathLen / keyUsage, algorithm)
"""

from __future__ import annotations

from keyadmin.errors import KeyadminError


class AttestationError(KeyadminError):
    """Base of every attestation verification failure."""

    def __init__(
        self, reason: str, *, prefix: str, hint: str | None = None, **data: object
    ) -> None:
        super().__init__(f"{prefix}: {reason}", hint=hint, reason=reason, **data)
        self.reason = reason


class AttestationMalformed(AttestationError):
    """The registration could not be parsed."""

    def __init__(self, reason: str, **data: object) -> None:
        super().__init__(
            reason,
            prefix="malformed registration",
            hint="the authenticator or client sent bytes that are not a valid "
            "WebAuthn registration; repeat the enrolment, and report the device if it recurs",
            **data,
        )


class AttestationUnsupported(AttestationError):
    """The format (or a feature of it, such as ECDAA) is not verified by keyadmin."""

    def __init__(self, reason: str, **data: object) -> None:
        super().__init__(
            reason,
            prefix="unsupported attestation",
            hint="enrol with a key that produces packed, fido-u2f, tpm, apple, "
            "android-key or android-safetynet attestation",
            **data,
        )


class AttestationInvalid(AttestationError):
    """The statement parses but does not prove what it claims."""

    def __init__(self, reason: str, **data: object) -> None:
        super().__init__(
            reason,
            prefix="invalid attestation",
            hint="the attestation does not verify: treat the key as untrusted and do not enrol it",
            **data,
        )


class AaguidMismatch(AttestationInvalid):
    """The AAGUID in the attestation certificate differs from authenticator data."""

    def __init__(self, authenticator_aaguid: str, certificate_aaguid: str) -> None:
        super().__init__(
            f"authenticator data claims AAGUID {authenticator_aaguid} but the attestation "
            f"certificate's id-fido-gen-ce-aaguid extension says {certificate_aaguid}",
            authenticator_aaguid=authenticator_aaguid,
            certificate_aaguid=certificate_aaguid,
        )
        self.authenticator_aaguid = authenticator_aaguid
        self.certificate_aaguid = certificate_aaguid


class AttestationUntrusted(AttestationError):
    """The statement is valid, but its certificate chain is not trusted."""

    def __init__(self, reason: str, **data: object) -> None:
        super().__init__(
            reason,
            prefix="untrusted attestation",
            hint="check that the metadata entry for this authenticator carries its "
            "attestationRootCertificates, or name the vendor root explicitly in the policy",
            **data,
        )
