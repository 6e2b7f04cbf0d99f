"""Uploaded images that attack the service: memory bombs (refused from their header), misread bitmap headers and
damaged JPEGs (refused before libjpeg fills them with grey), beside the whole ones that must still be captioned."""

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from velm_edge.synth import scenes
from velm_edge.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]
_h = load_script(ROOT / "benchmarks" / "hostile_load.py")  # the raw-socket helpers, as in test_service_under_attack
exchange, statuses, head, body_json = _h.exchange, _h.statuses, _h.head, _h.body_json
png_16bit_rgba, rss_kb, scene_png = _h.png_16bit_rgba, _h.rss_kb, _h.a_scene_png


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the service's peak memory from /proc")
def test_decoded_memory_bombs_are_refused_from_their_header(serve_process):
    proc, port = serve_process
    bomb = png_16bit_rgba(6300)  # 39.7 Mpx: under --max-pixels, but 318 MB decoded
    assert len(bomb) < 1_000_000
    exchange(port, head("POST", "/v1/caption", body=scene_png()))  # interpreters built: the baseline is warm
    before = rss_kb(proc.pid, "VmRSS")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: exchange(port, head("POST", "/v1/caption", body=bomb)), range(4)))
    assert [statuses(a)[0] for a in answers] == [413] * 4
    assert "decodes to" in body_json(answers[0])["error"]
    assert (rss_kb(proc.pid, "VmHWM") - before) / 1024 < 300


def test_an_os2_bitmap_reports_its_real_size(service):
    bmp = bytearray(cv2.imencode(".bmp", scenes.generate(1, scenes.SceneConfig(size=80))[0])[1].tobytes())
    core = bytes(bmp[:14]) + struct.pack("<IHHHH", 12, 80, 80, 1, 24) + bytes(bmp[54:])  # BITMAPCOREHEADER
    core = core[:10] + struct.pack("<I", 26) + core[14:]
    core = core[:2] + struct.pack("<I", len(core)) + core[6:]
    answer = exchange(service.port, head("POST", "/v1/caption", body=core))
    assert statuses(answer)[0] in (200, 400)
    assert "4294" not in answer.decode("latin-1")  # not the absurd sizes of a misread header


SAMPLE_JPEG = ROOT / "velm_edge" / "samples" / "cat.jpg"


def _scan(data: bytes) -> tuple[int, int]:
    """(first, end) byte offsets of a one-scan JPEG's entropy data."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + struct.unpack(">H", data[sos + 2:sos + 4])[0], data.rindex(b"\xff\xd9")


def _damaged_scans(count: int) -> list[bytes]:
    """The sample photo with 1 KB of its image data overwritten by random bytes, `count` ways: libjpeg decodes
    each with only a warning ("premature end of data segment") and fills the rest with grey."""
    data = SAMPLE_JPEG.read_bytes()
    first, end = _scan(data)
    rng = np.random.default_rng(21)
    damaged = []
    for _ in range(count):
        at = int(rng.integers(first, end - 1024))
        damaged.append(data[:at] + rng.integers(0, 256, 1024, dtype=np.uint8).tobytes() + data[at + 1024:])
    return damaged


def test_jpegs_with_damaged_image_data_are_refused(service):
    for damaged in _damaged_scans(8):
        assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV would
        answer = exchange(service.port, head("POST", "/v1/caption", body=damaged))
        assert statuses(answer) == [400], answer[:200]
        assert "damaged JPEG" in body_json(answer)["error"]


def test_a_small_jpeg_claiming_many_pixels_is_refused_before_decoding(service):
    """6000 x 6000 is under --max-pixels and --max-decoded-bytes, but a few bytes of image data cannot fill
    its 562,500 blocks: libjpeg would decode it into 108 MB of grey."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    bomb = bytearray(buf.tobytes())
    struct.pack_into(">HH", bomb, bomb.find(b"\xff\xc0") + 5, 6000, 6000)
    assert len(bomb) < 1000
    answer = exchange(service.port, head("POST", "/v1/caption", body=bytes(bomb)))
    assert statuses(answer) == [400] and "too few for the" in body_json(answer)["error"]


def test_restart_markers_out_of_order_are_refused(service):
    ok, buf = cv2.imencode(".jpg", cv2.imread(str(SAMPLE_JPEG)), [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    data = buf.tobytes()
    first, _ = _scan(data)
    at = data.index(b"\xff\xd2", first)  # the third restart marker, made a copy of the second
    answer = exchange(service.port, head("POST", "/v1/caption", body=data[:at] + b"\xff\xd1" + data[at + 2:]))
    assert statuses(answer) == [400] and "out of order" in body_json(answer)["error"]
    assert statuses(exchange(service.port, head("POST", "/v1/caption", body=data))) == [200]


@pytest.mark.parametrize("flags", [[cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2],
                                   [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 1]],
                         ids=["progressive", "restart interval", "progressive with restarts"])
def test_whole_jpegs_of_every_layout_are_captioned(service, flags):
    ok, buf = cv2.imencode(".jpg", cv2.imread(str(SAMPLE_JPEG)), flags)
    assert statuses(exchange(service.port, head("POST", "/v1/caption", body=buf.tobytes()))) == [200]


def test_extraneous_bytes_before_the_end_marker_are_still_captioned(service):
    """Some IP cameras pad their snapshots after the image data; libjpeg warns and decodes them whole."""
    data = SAMPLE_JPEG.read_bytes()
    _, end = _scan(data)
    padded = data[:end] + b"\x00" * 37 + data[end:]
    assert statuses(exchange(service.port, head("POST", "/v1/caption", body=padded))) == [200]
