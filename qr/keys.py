"""The Ed25519 keyring that signs tickets.

Keys live as PKCS#8 PEM files ``ed25519-<kid>.pem`` in TICKET_KEY_DIR (default
``instance/keys``), each with a ``ed25519-<kid>.json`` beside it recording when it was
made. The highest key id signs; every key in the folder verifies, so tickets issued
before a rotation keep working until the old key is retired. The first key is
created on first use, atomically, so several workers starting together agree on it.
A deployment may instead mount the folder from its secret store.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from common.timeutil import utcnow

_KEY_FILE = re.compile(r"ed25519-([1-9]\d{0,4})\.pem")
MAX_KID = 65535  # the token stores the key id in two bytes


@dataclass(frozen=True)
class Keyring:
    """Signing key id and key, every public key by id (``kid`` 1..65535), and when
    each key was made (aware UTC, or None for a key without its metadata file)."""

    signing_kid: int
    signing_key: Ed25519PrivateKey
    public_keys: dict[int, Ed25519PublicKey]
    created_at: dict[int, datetime | None]


def _write_atomically(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists (temp file + hard link, so a
    reader sees no file or a whole one). True when this call created it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def create_key(directory: str | Path, kid: int) -> bool:
    """Generate key ``kid`` in ``directory`` unless it exists; True when created.

    Raises: ValueError when ``kid`` is outside 1..65535.
    """
    if not 1 <= kid <= MAX_KID:
        raise ValueError(f"key id must be 1..{MAX_KID}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    meta = json.dumps({"kid": kid, "created_at": utcnow().isoformat()}).encode()
    _write_atomically(directory / f"ed25519-{kid}.json", meta)
    return _write_atomically(directory / f"ed25519-{kid}.pem", pem)


def key_ids(directory: str | Path) -> list[int]:
    """Return the ids of the keys in ``directory``, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        int(match.group(1))
        for match in (_KEY_FILE.fullmatch(p.name) for p in directory.iterdir())
        if match and int(match.group(1)) <= MAX_KID
    )


def rotate(directory: str | Path) -> int:
    """Create the next key (highest id + 1), which signs from now on; return its id.

    Raises: ValueError when the ids are used up.
    """
    kids = key_ids(directory)
    kid = (kids[-1] if kids else 0) + 1
    while not create_key(directory, kid):  # another process rotated at the same time
        kid += 1
    return kid


def retire(directory: str | Path, kid: int) -> None:
    """Delete key ``kid``: tickets signed with it stop verifying.

    Raises: ValueError when it is the signing (newest) key or does not exist.
    """
    kids = key_ids(directory)
    if kid not in kids:
        raise ValueError(f"no key {kid}")
    if kid == kids[-1]:
        raise ValueError("the signing key cannot be retired; rotate first")
    directory = Path(directory)
    (directory / f"ed25519-{kid}.pem").unlink()
    (directory / f"ed25519-{kid}.json").unlink(missing_ok=True)


def load_keyring(directory: str | Path, env_key: tuple[int, str] | None = None) -> Keyring:
    """Load every key in ``directory``, creating key 1 when there is none.

    Args: env_key, an optional (kid, PKCS#8 PEM text) given through the environment
      (TICKET_KEY_ID, TICKET_PRIVATE_KEY); with it no key is created on disk, and the
      folder's keys (older ones, say) still verify.
    Returns: a Keyring whose signing key is the one with the highest id.
    Raises: ValueError when a key is not an Ed25519 private key or a kid is invalid.
    """
    directory = Path(directory)
    private: dict[int, Ed25519PrivateKey] = {}
    created: dict[int, datetime | None] = {}
    if env_key is not None:
        kid, pem = env_key
        if not 1 <= kid <= MAX_KID:
            raise ValueError(f"TICKET_KEY_ID must be 1..{MAX_KID}")
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("TICKET_PRIVATE_KEY is not an Ed25519 private key")
        private[kid], created[kid] = key, None
    elif not key_ids(directory):
        create_key(directory, 1)
    for kid in key_ids(directory):
        path = directory / f"ed25519-{kid}.pem"
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # retired while we were listing
            continue
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        private[kid] = key
        try:
            meta = json.loads((directory / f"ed25519-{kid}.json").read_text())
            created[kid] = datetime.fromisoformat(meta["created_at"])
        except (FileNotFoundError, ValueError, KeyError):
            created[kid] = None
    if not private:
        raise ValueError(f"no ticket key could be read in {directory}")
    kid = max(private)
    return Keyring(
        signing_kid=kid,
        signing_key=private[kid],
        public_keys={k: v.public_key() for k, v in private.items()},
        created_at=created,
    )
