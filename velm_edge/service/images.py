"""What an uploaded image is, from its first bytes: JPEG, PNG or BMP, and its width and height.

The type is sniffed from the bytes (a Content-Type header is never trusted), and the pixel count and
the decoded bytes are read from the header before anything is decoded, so a small file that claims
100,000 x 100,000 pixels, or a 300 KB PNG of 40 Mpx at 16 bits and four channels (320 MB decoded), is
refused without allocating them.  A JPEG whose segments do not chain, or whose image data is too short
for the size it claims, is refused too (``check_intact``): libjpeg would only warn and decode grey.
"""

from __future__ import annotations

import struct

import numpy as np

from velm_edge.errors import FrameError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size (C4 = DHT, C8 = JPG, CC = DAC are not frames)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# baseline, extended and progressive DCT frames with Huffman codes (arithmetic coding can take less than
# a bit a block, and lossless frames have no blocks)
_HUFFMAN_DCT = {0xC0, 0xC1, 0xC2}
# segments that may come between the start of the image and its end besides frames: tables (DHT, DAC,
# DQT), restart interval, scan, DNL, DHP/EXP, application data and comments
_AFTER_HEADER = {0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xDC, 0xDE, 0xDF, *range(0xE0, 0xF0), 0xFE}


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


def _jpeg_markers(raw: np.ndarray) -> np.ndarray:
    """Offsets of every marker (0xFF then a byte that is not 0x00, a fill 0xFF or a restart marker) after
    the first two bytes; restart markers and stuffed 0xFF 0x00 are entropy data."""
    at = np.flatnonzero(raw[2:-1] == 0xFF) + 2
    follower = raw[at + 1]
    return at[(follower != 0x00) & (follower != 0xFF) & ((follower < 0xD0) | (follower > 0xD7))]


def _blocks(frame: bytes) -> int:
    """8 x 8 blocks a frame header's components cover, with their sampling factors; 0 if it is cut short."""
    if len(frame) < 6:
        return 0
    height, width, count = struct.unpack(">HHB", frame[1:6])
    sampling = [(b >> 4, b & 0x0F) for b in frame[7:6 + 3 * count:3]]
    if not sampling or len(sampling) < count or 0 in {f for pair in sampling for f in pair}:
        return 0
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    return sum(_ceil(_ceil(width * h, h_max), 8) * _ceil(_ceil(height * v, v_max), 8) for h, v in sampling)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _check_scans(data: bytes) -> None:
    """FrameError when the JPEG's segment chain breaks: a marker that cannot follow a scan, a segment whose
    length does not land on the next marker, restart markers out of order, or no end marker.

    libjpeg reads such a file with a warning only ("Corrupt JPEG data: premature end of data segment",
    "found marker 0xd3 instead of RST2") and fills what it could not decode with grey, and OpenCV does not
    pass the warning on: this walk is how a damaged file is told from a whole one before decoding.  Bytes
    that are not markers between a scan and the next marker ("extraneous bytes before marker", which
    some IP cameras write) are left alone: libjpeg decodes those files whole.

    A Huffman-coded DCT image also needs at least one bit of image data per 8 x 8 block (every block's DC
    coefficient is coded, in a code at least one bit long), so a 631-byte file that claims 6000 x 6000
    pixels, which libjpeg would decode into 108 MB of grey, is refused here before decoding."""
    raw = np.frombuffer(data, np.uint8)
    markers = _jpeg_markers(raw)
    pos, restart_interval, scan_bytes, blocks = 2, 0, 0, 0
    while True:
        if pos + 2 > len(data) or data[pos] != 0xFF:
            raise FrameError("a damaged JPEG: a segment length does not lead to the next marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            if scan_bytes * 8 < blocks:
                raise FrameError(f"a damaged JPEG: {scan_bytes} bytes of image data, too few for the "
                                 f"{blocks} blocks its header claims (at least {_ceil(blocks, 8)}): the image data "
                                 "is cut short")
            return
        if marker not in _AFTER_HEADER and marker not in _SOF:
            raise FrameError(f"a damaged JPEG: marker 0x{marker:02x} where a segment or the end marker belongs "
                             "(the image data is corrupt)")
        if pos + 4 > len(data):
            raise FrameError("a JPEG cut short in a segment header: the file is truncated")
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            raise FrameError("a damaged JPEG: a segment length below 2")
        if marker == 0xDD and length >= 4:  # define restart interval
            (restart_interval,) = struct.unpack(">H", data[pos + 4:pos + 6])
        if marker in _HUFFMAN_DCT:
            blocks = _blocks(data[pos + 4:pos + 2 + length])
        pos += 2 + length
        if marker != 0xDA:
            continue
        # a scan: its entropy data runs to the next marker; restart markers inside count 0..7 in turn
        following = markers[np.searchsorted(markers, pos):]
        end = int(following[0]) if len(following) else len(data)
        restarts = np.flatnonzero((raw[pos:end - 1] == 0xFF) & ((raw[pos + 1:end] & 0xF8) == 0xD0))
        if len(restarts):
            if not restart_interval:
                raise FrameError("a damaged JPEG: restart markers in a scan without a restart interval")
            order = (raw[pos + 1 + restarts] - 0xD0).astype(np.int64)
            if np.any(order != np.arange(len(order)) % 8):
                raise FrameError("a damaged JPEG: restart markers out of order (the image data is corrupt)")
        if not len(following):
            raise FrameError("a JPEG without its end marker after the image data: the file is truncated")
        scan_bytes += end - pos
        pos = end


def check_intact(data: bytes, kind: str) -> None:
    """FrameError for a file cut short or a JPEG whose segments do not chain: decoders would otherwise fill
    the missing or unreadable part with grey and the caption would describe that."""
    if kind == "png" and b"IEND" not in data[-64:]:
        raise FrameError("a PNG without its IEND chunk: the file is truncated")
    if kind == "jpeg":
        _check_scans(data)
    if kind == "bmp":
        (declared,) = struct.unpack("<I", data[2:6])
        if declared > len(data):
            raise FrameError(f"a BMP that declares {declared} bytes but has {len(data)}: the file is truncated")
