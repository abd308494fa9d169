"""The 2025 firmware's login rule, in one place: who logs in and with which password.

The PVS's user is `ssm_owner`; its password is the last five characters of the PVS
serial, upper-cased, unless the installer changed it (then `upstream.password`).
"""

from __future__ import annotations

import base64
import binascii

USER = "ssm_owner"


def derive_password(serial: str) -> str:
    """The PVS's default password: the last 5 characters of its serial, upper-cased."""
    return serial[-5:].upper()


def basic_header(password: str) -> str:
    """`Authorization` for the PVS: lower-case `basic`, as the reference client sends it."""
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return f"basic {token}"


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from `Authorization: Basic ...` in either case, or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
