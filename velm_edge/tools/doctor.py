"""``velm-edge doctor``: what this machine offers the runtime, each finding with what to do about it.

Nothing here needs a camera or an Edge TPU: missing hardware is reported plainly, not as a crash.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.metadata
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

OK, MISSING, PROBLEM = "ok", "--", "!!"


@dataclass(frozen=True)
class Finding:
    status: str  # ok | -- (absent, fine) | !! (needs attention)
    topic: str
    detail: str


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def interpreters() -> list[Finding]:
    import numpy as np

    out = [Finding(OK, "python", f"{platform.python_version()} on {platform.system()} {platform.machine()}"),
           Finding(OK, "numpy", f"{np.__version__} (C ABI {'2.x' if int(np.__version__.split('.')[0]) >= 2 else '1.x'};"
                                f" tflite-runtime needs 1.x, ai-edge-litert works with 2.x)")]
    for name, module, dists in (("ai-edge-litert", "ai_edge_litert.interpreter", ("ai-edge-litert",)),
                                ("tflite-runtime", "tflite_runtime.interpreter", ("tflite-runtime",))):
        version = _version(*dists)
        if version is None:
            out.append(Finding(MISSING, name, "not installed"))
            continue
        try:
            importlib.import_module(module)
            out.append(Finding(OK, name, f"{version}, imports"))
        except Exception as e:  # a numpy ABI mismatch raises ImportError or AttributeError
            out.append(Finding(PROBLEM, name, f"{version} installed but does not import: {str(e).splitlines()[0]}"))
    tf = _version("tensorflow", "tensorflow-cpu")
    out.append(Finding(OK if tf else MISSING, "tensorflow",
                       f"{tf} (used only as a last-resort interpreter; the runtime never needs it)" if tf
                       else "not installed (not needed on a device)"))
    from velm_edge.runtime import backend

    try:
        _, name = backend.interpreter_module("auto")
        out.append(Finding(OK, "interpreter", f"backend 'auto' uses {name}"))
    except ImportError as e:
        out.append(Finding(PROBLEM, "interpreter", str(e)))
    return out


def edgetpu() -> list[Finding]:
    from velm_edge.runtime import backend

    library = backend.edgetpu_library()
    try:
        ctypes.CDLL(library)
        lib = Finding(OK, "edgetpu runtime", f"{library} loads")
    except OSError:
        lib = Finding(MISSING, "edgetpu runtime", f"{library} not found; only needed for a Coral Edge TPU "
                                                  f"({backend.EDGETPU_HELP})")
    usb = [Path(p).parent.name for p in glob.glob("/sys/bus/usb/devices/*/idVendor")
           if Path(p).read_text().strip() in ("1a6e", "18d1")
           and (Path(p).parent / "idProduct").read_text().strip() in ("089a", "9302")]
    pci = sorted(glob.glob("/dev/apex_*"))
    found = [f"USB {u}" for u in usb] + pci
    dev = Finding(OK, "edgetpu devices", ", ".join(found)) if found else Finding(
        MISSING, "edgetpu devices", "no Coral USB accelerator or PCIe/M.2 module found")
    return [lib, dev]


def opencv() -> list[Finding]:
    import cv2

    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    headless = gui in ("", "NONE")
    backends = list(dict.fromkeys(cv2.videoio_registry.getBackendName(b) for b in cv2.videoio_registry.getBackends()))
    out = [Finding(OK, "opencv", f"{cv2.__version__}, video backends: {', '.join(backends) or 'none'}")]
    out.append(Finding(MISSING if headless else OK, "opencv window",
                       "headless build: the 'window' sink is unavailable (install opencv-python instead of "
                       "opencv-python-headless for a desktop preview)" if headless else f"GUI: {gui}"))
    if "FFMPEG" not in backends:
        out.append(Finding(PROBLEM, "opencv ffmpeg",
                           "no FFmpeg backend: video files and rtsp:// streams will not open"))
    return out


def cameras() -> list[Finding]:
    out = []
    try:
        importlib.import_module("picamera2")
        out.append(Finding(OK, "picamera2", f"{_version('picamera2') or 'system package'}, imports"))
    except Exception as e:
        on_pi = platform.machine() in ("aarch64", "armv7l")
        hint = ("on Raspberry Pi OS: sudo apt install python3-picamera2, and make the venv with "
                "--system-site-packages") if on_pi else "only for Raspberry Pi cameras"
        out.append(Finding(MISSING, "picamera2", f"not importable ({type(e).__name__}); {hint}"))
    devices = sorted(glob.glob("/dev/video*"), key=lambda p: int(p.removeprefix("/dev/video") or 0))
    names = []
    for d in devices:
        name_file = Path("/sys/class/video4linux") / Path(d).name / "name"
        names.append(f"{d} ({name_file.read_text().strip()})" if name_file.is_file() else d)
    out.append(Finding(OK, "cameras", ", ".join(names)) if names else Finding(
        MISSING, "cameras", "no /dev/video* device; use a file, a stream or the synthetic camera 'synth:'"))
    return out


def shipped_bundles() -> list[Finding]:
    """Both shipped bundles load and caption: the photo bundle (the default) a frame in its time, the shapes
    bundle a synthetic scene word for word."""
    from velm_edge.runtime import bundle
    from velm_edge.runtime.captioner import Captioner
    from velm_edge.runtime.tokenizer import normalize
    from velm_edge.synth import scenes

    out = []
    for name, path in bundle.SHIPPED.items():
        topic = f"{name} bundle"
        if not (path / "manifest.json").is_file():
            out.append(Finding(MISSING, topic, f"not shipped at {path}; pass --bundle"))
            continue
        try:
            with Captioner.open(path) as cap:
                image, truth = scenes.generate(12345, scenes.SceneConfig(size=cap.size))
                got = cap.caption(image)
            detail = (f"{path.name}{' (the default)' if path == bundle.DEFAULT_BUNDLE else ''} loads and captions a "
                      f"frame in {got.timings_ms['total']:.1f} ms")
            status = OK
            if name == "shapes":
                status = OK if normalize(got.text) == normalize(truth) else PROBLEM
                detail += f": a synthetic scene: '{got.text}' (truth: '{truth}')"
            out.append(Finding(status, topic, detail))
        except Exception as e:
            out.append(Finding(PROBLEM, topic, f"{type(e).__name__}: {e}"))
    return out


def run() -> list[Finding]:
    return [*interpreters(), *edgetpu(), *opencv(), *cameras(), *shipped_bundles()]


def report(findings: list[Finding]) -> str:
    width = max(len(f.topic) for f in findings)
    return "\n".join(f"{f.status}  {f.topic:{width}s}  {f.detail}" for f in findings)


def to_json(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]


if __name__ == "__main__":
    print(report(run()))
    sys.exit(0)
