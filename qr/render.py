"""Render a ticket token as a QR image: dark modules on white, 4-module quiet zone."""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def qr_png(data: str, box_size: int = 8, border: int = 4) -> bytes:
    """Return PNG bytes of a QR code for ``data`` at error correction M.

    Args: box_size, pixels per module (8 gives ~360 px for a version 7 code, a phone
      screen's width); border, quiet zone in modules (the standard asks for 4).
    """
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def qr_svg(data: str, border: int = 4) -> bytes:
    """Return an SVG of a QR code for ``data`` (error correction M, quiet zone
    ``border`` modules): black modules on an explicit white background."""
    from qrcode.image.svg import SvgPathFillImage

    code = qrcode.QRCode(
        error_correction=ERROR_CORRECT_M, border=border, image_factory=SvgPathFillImage
    )
    code.add_data(data)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()
