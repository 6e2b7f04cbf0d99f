"""What an uploaded image is, from its first bytes: JPEG, PNG or BMP, and its width and height.

The type is sniffed from the bytes (a Content-Type header is never trusted), and the pixel count and
the decoded bytes are read from the header before anything is decoded, so a small file that claims
100,000 x 100,000 pixels, or a 300 KB PNG of 40 Mpx at 16 bits and four channels (320 MB decoded), is
refused without allocating them.
"""

from __future__ import annotations

import struct

from velm_edge.errors import FrameError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size (C4 = DHT, C8 = JPG, CC = DAC are not frames)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff(data: bytes) -> str:
    """"jpeg", "png" or "bmp"; FrameError for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_MAGIC:
        return "png"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    raise FrameError("not a JPEG, PNG or BMP image (judged by its first bytes, not by Content-Type)")


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bits per sample, components) from the JPEG's frame header."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise FrameError("a damaged JPEG: a marker was expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            raise FrameError("a damaged JPEG: a segment length below 2")
        if marker in _SOF:
            if pos + 10 > len(data):
                break
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            return width, height, precision, components
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise FrameError("a JPEG without a frame header (truncated or damaged)")


def _bmp_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, bits per pixel) of a Windows or an OS/2 (12-byte header) BMP."""
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        if len(data) < 26:
            raise FrameError("a BMP cut short in its header")
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        return width, height, bits
    if len(data) < 30:
        raise FrameError("a BMP cut short in its header")
    width, height, _, bits = struct.unpack("<iiHH", data[18:30])
    return width, abs(height), bits  # a negative height: stored top-down


def header(data: bytes, kind: str) -> tuple[int, int, int]:
    """(width, height, decoded bytes) from the header: decoded bytes = width x height x channels x bytes per
    sample, what the decoder allocates (a 16-bit RGBA PNG takes 8 bytes a pixel).  FrameError when the
    header is cut short or makes no sense."""
    if kind == "png":
        if len(data) < 26 or data[12:16] != b"IHDR":
            raise FrameError("a PNG without its IHDR header (truncated or damaged)")
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        per_pixel = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4) * (2 if depth == 16 else 1)
    elif kind == "bmp":
        width, height, bits = _bmp_header(data)
        per_pixel = max(3, bits // 8)
    else:
        width, height, precision, components = _jpeg_frame(data)
        per_pixel = max(1, components) * (2 if precision > 8 else 1)
    if width <= 0 or height <= 0:
        raise FrameError(f"the image header gives a size of {width} x {height} pixels")
    return width, height, width * height * per_pixel


def check_complete(data: bytes, kind: str) -> None:
    """FrameError for a file cut short: decoders would otherwise fill the missing part with grey (JPEG)."""
    if kind == "png" and b"IEND" not in data[-64:]:
        raise FrameError("a PNG without its IEND chunk: the file is truncated")
    if kind == "jpeg" and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda"):
        raise FrameError("a JPEG without its end marker after the image data: the file is truncated")
    if kind == "bmp":
        (declared,) = struct.unpack("<I", data[2:6])
        if declared > len(data):
            raise FrameError(f"a BMP that declares {declared} bytes but has {len(data)}: the file is truncated")
