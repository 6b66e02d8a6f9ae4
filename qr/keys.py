"""The Ed25519 keyring that signs tickets.

Keys live as PKCS#8 PEM files ``ed25519-<kid>.pem`` in TICKET_KEY_DIR (default
``instance/keys``); the highest key id signs, every key verifies. The first key is
created on first use, atomically, so several workers starting together agree on it.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

_KEY_FILE = re.compile(r"ed25519-(\d{1,5})\.pem")


@dataclass(frozen=True)
class Keyring:
    """Signing key id and key, and every public key by id (``kid`` is 1..65535)."""

    signing_kid: int
    signing_key: Ed25519PrivateKey
    public_keys: dict[int, Ed25519PublicKey]


def _write_new_key(directory: Path, kid: int) -> bool:
    """Create key ``kid`` unless it exists; True when this call created it.

    The key is written to a temporary file and hard-linked into place, so another
    process sees either no key file or a complete one, and only one creator wins.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".new-key-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.link(tmp, directory / f"ed25519-{kid}.pem")
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def load_keyring(directory: str | Path) -> Keyring:
    """Load every key in ``directory``, creating key 1 when there is none.

    Returns: a Keyring whose signing key is the one with the highest id.
    Raises: ValueError when a key file is not an Ed25519 private key.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not any(_KEY_FILE.fullmatch(p.name) for p in directory.iterdir()):
        _write_new_key(directory, 1)
    private: dict[int, Ed25519PrivateKey] = {}
    for path in directory.iterdir():
        match = _KEY_FILE.fullmatch(path.name)
        if not match:
            continue
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        private[int(match.group(1))] = key
    kid = max(private)
    return Keyring(
        signing_kid=kid,
        signing_key=private[kid],
        public_keys={k: v.public_key() for k, v in private.items()},
    )
