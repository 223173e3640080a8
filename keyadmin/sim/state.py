"""The software key's persistent state: one JSON file the operator names.

The file holds everything a real key keeps in its secure element: credentials
with their private keys, the PIN hash and retry counter, signature counters,
configuration and the attestation keys. Copying the file makes a clone (for
counter tests). Writes are atomic (temporary file + rename) with mode 0600.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keyadmin.errors import StateFileError
from keyadmin.sim.enterprise import new_serial

#: The longest a software key's 'slow' fault may make one reply take (seconds).
MAX_FAULT_DELAY = 60.0

STATE_FORMAT = "keyadmin-softkey/1"

COUNTER_MODES = ("per-credential", "global", "zero", "rollback")
ATTESTATION_MODES = ("packed", "self", "none", "fido-u2f")
FAULTS = (
    "malformed-cbor",  # the reply is not valid CBOR
    "truncated",  # the reply is cut short
    "wrong-rpid-hash",  # authData carries the hash of another RP ID
    "bad-signature",  # the attestation / assertion signature does not verify
    "cert-aaguid-mismatch",  # the attestation certificate names another AAGUID
    "no-cert-aaguid",  # the attestation certificate carries no AAGUID extension
    "clear-up-uv",  # UP and UV flags cleared in authData
    "ctap-error",  # answer every command in fault_commands with fault_ctap_error
    "slow",  # take fault_delay seconds, sending keepalives
)

# A fixed AAGUID for keyadmin software keys (random, registered nowhere).
DEFAULT_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass
class Credential:
    credential_id: str  # base64
    rp_id: str
    rp_name: str | None
    user_id: str  # base64
    user_name: str | None
    user_display_name: str | None
    algorithm: int
    private_key_pem: str
    discoverable: bool
    cred_protect: int
    counter: int = 0
    uses: int = 0
    created: float = 0.0
    # extensions (keyadmin.sim.extensions): base64, None when the credential has none
    cred_random: str | None = None  # hmac-secret: CredRandomWithUV || CredRandomWithoutUV
    cred_blob: str | None = None  # credBlob
    large_blob_key: str | None = None  # largeBlobKey

    @property
    def id_bytes(self) -> bytes:
        return b64d(self.credential_id)

    @property
    def user_id_bytes(self) -> bytes:
        return b64d(self.user_id)


@dataclass
class KeyState:
    aaguid: str = DEFAULT_AAGUID
    firmware: int = 0x050700  # 5.7.0, encoded as CTAP firmwareVersion (an integer)
    counter_mode: str = "per-credential"
    rollback_after: int = 0
    global_counter: int = 0
    attestation: str = "packed"
    backup_eligible: bool = False
    backed_up: bool = False
    transports: list[str] = field(default_factory=lambda: ["usb", "nfc"])
    # COSE: ES256, EdDSA, ES384, RS256 (older state files keep the list they were made with)
    algorithms: list[int] = field(default_factory=lambda: [-7, -8, -35, -257])
    max_discoverable: int = 25
    faults: list[str] = field(default_factory=list)
    fault_commands: list[int] = field(default_factory=list)
    fault_ctap_error: int = 0x7F
    fault_delay: float = 0.0
    # PIN and configuration
    pin_hash: str | None = None  # base64 of LEFT(SHA-256(PIN), 16), as CTAP keeps it
    pin_code_points: int = 0
    pin_retries: int = 8
    min_pin_length: int = 4
    min_pin_length_rp_ids: list[str] = field(default_factory=list)
    force_pin_change: bool = False
    always_uv: bool = False
    ep_enabled: bool = False
    # the serialized large-blob array (CTAP 2.1 §6.10), base64; "" = the empty array
    large_blob_array: str = ""
    # Enterprise attestation (keyadmin.sim.enterprise): vendor-facilitated RP IDs, the serial
    # in id-fido-gen-ce-sernum, and the enterprise attestation key and certificate (PEM)
    ep_rp_ids: list[str] = field(default_factory=list)
    serial: int = field(default_factory=new_serial)
    ep_cert_pem: str = ""
    ep_key_pem: str = ""
    # Attestation PKI, generated for this key state (PEM)
    root_cert_pem: str = ""
    root_key_pem: str = ""
    intermediate_cert_pem: str = ""
    intermediate_key_pem: str = ""
    leaf_cert_pem: str = ""
    leaf_key_pem: str = ""
    credentials: list[Credential] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Numbers a state file (or ``sim init``) may set: a fault delay that never ends or a
        negative rollback would hang or break every command on this key."""
        delay = self.fault_delay
        if (
            not isinstance(delay, (int, float))
            or isinstance(delay, bool)
            or not math.isfinite(delay)
            or not 0 <= delay <= MAX_FAULT_DELAY
        ):
            raise ValueError(f"fault_delay must be 0..{MAX_FAULT_DELAY:g} seconds, not {delay!r}")
        for name in ("rollback_after", "global_counter", "pin_retries", "max_discoverable"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                raise ValueError(f"{name} must be an integer 0..{2**32 - 1}, not {value!r}")

    def discoverable(self) -> list[Credential]:
        """The discoverable (resident) credentials, in the order they were made."""
        return [c for c in self.credentials if c.discoverable]

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = STATE_FORMAT
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "state file") -> KeyState:
        try:
            data: object = json.loads(text)
        except RecursionError:
            raise StateFileError(f"{source} is not valid JSON: nested too deeply") from None
        except ValueError as e:
            raise StateFileError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(data, dict) or data.pop("format", None) != STATE_FORMAT:
            raise StateFileError(
                f"{source} is not a keyadmin software-key state file",
                hint="create one with: keyadmin sim init --state FILE",
            )
        try:
            creds = [Credential(**c) for c in data.pop("credentials", [])]
            state = cls(**data, credentials=creds)
            uuid.UUID(state.aaguid)
        except (TypeError, ValueError) as e:
            raise StateFileError(f"{source} is damaged: {e}") from None
        return state


def load_state(path: Path) -> KeyState:
    from keyadmin.errors import ConfigError
    from keyadmin.files import read_input

    try:
        text = read_input(path).decode("utf-8")
    except UnicodeDecodeError:
        raise StateFileError(f"{path} is damaged: not UTF-8 text") from None
    except ConfigError as e:
        raise StateFileError(e.message, hint=e.hint) from None
    except FileNotFoundError:
        raise StateFileError(
            f"no software-key state file at {path}",
            hint=f"create it with: keyadmin sim init --state {path}",
        ) from None
    except OSError as e:
        raise StateFileError(f"cannot read {path}: {e.strerror}") from None
    return KeyState.from_json(text, source=str(path))


def save_state(path: Path, state: KeyState) -> None:
    """Write atomically with mode 0600 (keyadmin.files.write_atomic): a crash leaves the old
    or the new file, never half; a symlink planted at the path is replaced, not followed; a
    directory others can write is refused."""
    from keyadmin.errors import ConfigError
    from keyadmin.files import write_atomic

    try:
        write_atomic(Path(path), state.to_json().encode("utf-8"), 0o600)
    except ConfigError as e:
        raise StateFileError(e.message, hint=e.hint) from None
