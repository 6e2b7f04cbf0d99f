"""``velm-edge``: the device command line (never imports TensorFlow).

    velm-edge run [SOURCE] [--sink S]...                 live captions (camera, file, stream, synth:)
    velm-edge serve [SOURCE] [--port P]                  captions over local HTTP for any program
    velm-edge caption IMAGE... [--bundle B] [--json]     captions for image files
    velm-edge detect IMAGE... [--draw OUT] [--json]      who and what is in image files, with boxes
    velm-edge info [BUNDLE]                              what a bundle holds
    velm-edge bench [BUNDLE] [--against OTHER]           where a caption's time goes
    velm-edge doctor                                     what this machine offers the runtime
    velm-edge synth --out DIR                            synthetic scenes with their captions
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from velm_edge import __version__
from velm_edge.errors import OptionError, VelmError
from velm_edge.runtime.bundle import DEFAULT_BUNDLE, SHIPPED, resolve
from velm_edge.runtime.choices import HELP, RESIZE_MODES
from velm_edge.runtime.decode import DecodeOptions
from velm_edge.runtime.detect import DetectOptions
from velm_edge.runtime.options import RuntimeOptions
from velm_edge.specs import describe
from velm_edge.synth import scenes
from velm_edge.tools.flags import HelpFormatter, add_fields, add_flag, from_args, run_command


def cmd_synth(args) -> int:
    import cv2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = scenes.SceneConfig(size=args.size)
    rows = []
    if args.animated:
        cam = scenes.AnimatedScenes(seed=args.seed, fps=args.fps, hold_s=args.hold_s, cfg=cfg)
        frames = (cam.frame(i) for i in range(args.count))
    else:
        frames = (scenes.generate(args.seed + i, cfg) for i in range(args.count))
    for i, (img, caption) in enumerate(frames):
        name = f"scene_{i:06d}.{args.format}"
        if not cv2.imwrite(str(out / name), img):
            print(f"velm-edge synth: error: could not write {out / name}", file=sys.stderr)
            return 1
        rows.append((name, caption))
    with open(out / "captions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(rows)
    print(f"wrote {len(rows)} images and {out / 'captions.csv'}")
    return 0


NOTHING = "nothing recognisable"  # what caption prints for a frame under --min-confidence


def decode_options(args, base: DecodeOptions = DecodeOptions()) -> DecodeOptions:
    """``base`` (the bundle's recommended decoding) with every decoding flag the user gave on top."""
    return base.override(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(DecodeOptions)})


def open_captioner(args, side_by_side: int = 1):
    """The Captioner the flags ask for; ``side_by_side``: threads that will caption at once (they share the cores)."""
    from velm_edge.runtime.captioner import Captioner

    runtime = from_args(RuntimeOptions, args).sharing(side_by_side)
    detection = from_args(DetectOptions, args) if hasattr(args, "min_score") else None
    cap = Captioner.open(args.bundle, runtime, resize=getattr(args, "resize", None), isolate=args.isolate,
                         source=getattr(args, "source", None), detection=detection)
    cap.options = decode_options(args, cap.options)  # the bundle's recommended decoding, with the flags on top
    return cap


def cmd_caption(args) -> int:
    from velm_edge.runtime.image_file import read_image

    images = list(args.images)
    if args.samples:
        from velm_edge import samples

        images += [str(p) for p in samples.paths()]
    if not images:
        raise OptionError("name at least one IMAGE, or pass --samples for the photos that ship with velm-edge")
    failed = 0
    with open_captioner(args) as cap:
        for path in images:
            try:
                c = cap.caption(read_image(path))
            except (VelmError, OSError) as e:
                print(f"velm-edge caption: error: {path}: {e}", file=sys.stderr)
                failed += 1
                continue
            quiet = c.confidence < args.min_confidence
            if args.json:
                print(json.dumps({"image": path, **c.to_json(), "recognised": not quiet}), flush=True)
            elif quiet:
                print(f"{path}: ({NOTHING}: {c.text!r}, confidence {c.confidence:.2f})", flush=True)
            else:
                words = {}  # each word once, with its likeliest class's score
                for t in c.tags:
                    if t.word and t.score >= 0.01:
                        words.setdefault(t.word, t.score)
                print(f"{path}: {c.text}" + ("" if c.complete else "  [cut short]")
                      + (f"  [{', '.join(f'{w} {p:.2f}' for w, p in words.items())}]" if args.tags and words else ""),
                      flush=True)
    return 1 if failed else 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def drawn_path(out: Path, image: str, many: bool) -> Path:
    """Where ``--draw OUT`` puts the boxes of ``image``: OUT itself for one image named like an image file, else
    OUT/<image's name>."""
    if not many and out.suffix.lower() in IMAGE_SUFFIXES:
        return out
    return out / (Path(image).stem + ".jpg")


def cmd_detect(args) -> int:
    import cv2

    from velm_edge.runtime.image_file import read_image
    from velm_edge.runtime.preprocess import as_bgr
    from velm_edge.sinks.overlay import draw_detections

    images = list(args.images)
    if not images:
        raise OptionError("name at least one IMAGE")
    out = Path(args.draw) if args.draw else None
    failed = 0
    with open_captioner(args) as cap:
        for path in images:
            try:
                frame = read_image(path)
                found = cap.detect(frame)
            except (VelmError, OSError) as e:
                print(f"velm-edge detect: error: {path}: {e}", file=sys.stderr)
                failed += 1
                continue
            if args.json:
                print(json.dumps({"image": path, "detections": [d.to_json() for d in found]}), flush=True)
            else:
                listed = ", ".join(f"{d.label} {d.score:.2f} [{' '.join(map(str, d.box))}]" for d in found)
                print(f"{path}: {listed or 'nothing detected'}", flush=True)
            if out is not None:
                target = drawn_path(out, path, len(images) > 1)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), draw_detections(as_bgr(frame).copy(), found)):
                    raise OSError(f"{target}: OpenCV could not write it (use .jpg or .png)")
    return 1 if failed else 0


def cmd_info(args) -> int:
    from velm_edge.tools import info

    report = info.bundle_info(resolve(args.bundle), from_args(RuntimeOptions, args), args.isolate)
    print(json.dumps(report, indent=2) if args.json else info.format_info(report))
    return 0


def cmd_bench(args) -> int:
    from velm_edge.runtime.bundle import read_manifest
    from velm_edge.tools import bench

    def shipped(path):  # each bundle with the decoding its manifest recommends, the flags on top
        return decode_options(args, DecodeOptions.recommended(read_manifest(path)))

    path = resolve(args.bundle)
    if args.sweep_threads:
        rows = bench.sweep(path, args.sweep_threads, from_args(RuntimeOptions, args), shipped(path), args.images,
                           args.frame)
        print(json.dumps(rows, indent=2) if args.json else bench.format_sweep(rows))
        return 0
    kw = dict(runtime=from_args(RuntimeOptions, args), images=args.images, cold_runs=args.cold_runs, frame=args.frame,
              detection=from_args(DetectOptions, args))
    result = bench.run(path, options=shipped(path), **kw)
    other = bench.run(args.against, options=shipped(resolve(args.against)), **kw) if args.against else None
    if args.json:
        print(json.dumps({"result": result, "against": other}, indent=2))
    else:
        print(bench.format_result(result, other))
        if other:
            print()
            print(bench.format_result(other))
    return 0


def cmd_run(args) -> int:
    import signal

    from velm_edge.live import pipeline, sources
    from velm_edge.live.options import LiveOptions
    from velm_edge.live.systemd import Notifier
    from velm_edge.sinks.kinds import open_sink

    uri = args.source or sources.default_camera()
    if uri is None:
        raise OptionError("no camera found (no /dev/video* device). Try the synthetic camera: velm-edge run synth:")
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: the loop ends, sinks are flushed
        signal.signal(sig, lambda *_: stopping.append(True))
    source = sources.open_source(uri, loop=args.loop)
    outputs = [open_sink(spec) for spec in (args.sink or ["print"])]
    live = from_args(LiveOptions, args, overlap=args.device == "cpu" if args.overlap is None else args.overlap)
    notifier = Notifier()  # systemd: READY, a watchdog fed by processed frames, STOPPING (no-op elsewhere)
    try:
        with open_captioner(args, side_by_side=2 if live.overlap else 1) as cap:  # vision ahead beside the decoder
            notifier.ready(f"captioning {uri}")
            for out in outputs:
                if out.address is not None:
                    print(f"velm-edge run: {out.name} page at {out.address} (open it in a browser)", file=sys.stderr)
            counts = pipeline.run(source, cap, outputs, live, stop=lambda: bool(stopping),
                                  on_progress=notifier.progress if notifier.watchdog_s else None)
    finally:
        notifier.stopping()
    summary = f"{counts['captions']} captions"
    if counts["with_truth"]:
        summary += f", {counts['correct']} of {counts['with_truth']} equal to the synthetic truth"
    print(f"velm-edge run: {summary}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    import signal
    import threading

    from velm_edge.live import sources
    from velm_edge.service.server import CaptionService, ServiceOptions

    options = from_args(ServiceOptions, args)  # its workers share the cores (open_captioner)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    source = sources.open_source(args.source, loop=args.loop) if args.source else None
    with open_captioner(args, side_by_side=options.workers) as cap:
        with CaptionService(cap, options, source, args.source) as service:
            print(f"velm-edge serve: listening on {service.url} (POST an image to {service.url}/v1/caption; "
                  f"API: {service.url}/v1/openapi.json; Ollama and OpenAI clients: base URL {service.url}, "
                  f"model {service.model.name})", file=sys.stderr, flush=True)
            # in slices: the kernel may hand SIGTERM to a server thread, and Python runs the handler only when
            # the main thread next runs, which an untimed wait on a lock never does (it hung 1 run in 6)
            while not stopping.wait(0.2):
                pass
    print("velm-edge serve: stopped", file=sys.stderr)
    return 0


def cmd_doctor(args) -> int:
    from velm_edge.tools import doctor

    findings = doctor.run()
    print(json.dumps(doctor.to_json(findings), indent=2) if args.json else doctor.report(findings))
    return 0


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"frame sides must be 16-8192 pixels, got {text!r}")
    return w, h


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2,4, got {text!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError(f"thread counts must be 1-64, got {text!r}")
    return counts


def _bundle_options(p: argparse.ArgumentParser, positional: bool = False, isolate: bool = True,
                    device: bool = True) -> None:
    what = "a bundle directory (NAME.velm) or a shipped bundle: " + ", ".join(SHIPPED) + \
        " (photo: real-world photos; shapes: the synthetic scenes)"
    if positional:
        p.add_argument("bundle", nargs="?", default=str(DEFAULT_BUNDLE), help=f"{what} (default: photo)")
    else:
        add_flag(p, "--bundle", default=None, help=f"{what} (default: photo; shapes for the synth: source)")
    add_fields(p, RuntimeOptions, skip=() if device else ("device",))
    if isolate:
        add_flag(p, "--isolate", action="store_true",
                 help="for a bundle you did not make: first load and run it once in a child process with memory "
                      "and time limits, so one that crashes the interpreter is refused instead")


def _resize_option(p: argparse.ArgumentParser) -> None:
    add_flag(p, "--resize", default=None, choices=RESIZE_MODES,
             help=HELP["resize"] + " (default: the bundle's, as in training)")


def _decode_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding (default: what the bundle's manifest recommends, else greedy)")
    add_fields(g, DecodeOptions, defaults={f.name: None for f in dataclasses.fields(DecodeOptions)})  # None: not given
    _detect_flags(p)


def _detect_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    add_fields(p.add_argument_group("detection (bundles with a detector graph: the photo bundle)"), DetectOptions,
               skip=skip)


def build_parser() -> argparse.ArgumentParser:
    from velm_edge.live.options import LiveOptions
    from velm_edge.live.sources import SOURCE_KINDS
    from velm_edge.service.server import ServiceOptions
    from velm_edge.sinks.kinds import SINK_KINDS

    parser = argparse.ArgumentParser(prog="velm-edge", description="Live, offline image captions on edge devices.")
    parser.add_argument("--version", action="version", version=f"velm-edge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = HelpFormatter

    sp = sub.add_parser("caption", formatter_class=fmt, help="caption image files",
                        description="Caption image files (PNG, JPEG, ...; 8- or 16-bit, grey, colour or with alpha) "
                                    "with a bundle, one line per image.  Unreadable files are reported and skipped; "
                                    "the exit code is 1 if any was.")
    sp.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    add_flag(sp, "--samples", action="store_true",
             help="also caption the public-domain and CC0 sample photos that ship with velm-edge")
    _bundle_options(sp)
    _resize_option(sp)
    _decode_flags(sp)
    add_flag(sp, "--min-confidence", type=float, default=0.0,
             help="print 'nothing recognisable' (and the caption) for an image whose confidence is below this (0-1)")
    sp.add_argument("--json", action="store_true", help="one JSON object per line: image, text, tokens, score, "
                                                        "confidence, tags, detections, complete, timings_ms, "
                                                        "recognised")
    add_flag(sp, "--tags", action="store_true", help="also print the classifier's words and scores after each caption")

    sp = sub.add_parser("detect", formatter_class=fmt, help="who and what is in image files, with boxes",
                        description="Run the bundle's detector graph (COCO's 80 classes: person, car, dog, ...) on "
                                    "image files: one line per image with each object's label, score and box "
                                    "(x_min y_min x_max y_max in the image's pixels), best first.  --draw writes "
                                    "the boxes onto a copy of each photo.  Unreadable files are reported and "
                                    "skipped; the exit code is 1 if any was.")
    sp.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    _bundle_options(sp)
    _detect_flags(sp, skip=("detect",))
    add_flag(sp, "--draw", metavar="OUT", default=None,
             help="write each photo with its boxes: to OUT for one image named like an image file (boxes.jpg), "
                  "else into the folder OUT (created), as NAME.jpg")
    sp.add_argument("--json", action="store_true", help="one JSON object per line: image, detections (label, score, "
                                                        "box)")

    sp = sub.add_parser("run", formatter_class=fmt, help="live captions from a camera, file, stream or synth:",
                        description="Caption the newest frame of a source again and again and send every caption "
                                    "to the sinks.  Ctrl-C or SIGTERM stops cleanly with every sink flushed.  "
                                    "SOURCE (default: the first camera): " + describe(SOURCE_KINDS) + ".")
    sp.add_argument("source", nargs="?", default=None, help="what to caption (see above)")
    _bundle_options(sp)
    _resize_option(sp)
    _decode_flags(sp)
    add_flag(sp, "--sink", action="append", default=None, metavar="SINK",
             help="where captions go, repeat for several (default: print): " + describe(SINK_KINDS))
    add_fields(sp, LiveOptions, defaults={"overlap": None})
    add_flag(sp, "--loop", action="store_true", help="start a video file or image folder again at its end")

    sp = sub.add_parser("serve", formatter_class=fmt, help="captions over local HTTP for any program",
                        description="Serve captions over HTTP: POST an image (JPEG, PNG or BMP) to /v1/caption and "
                                    "get its caption as JSON; /v1/info, /health and the OpenAPI description at "
                                    "/v1/openapi.json.  With a SOURCE, also its live captions at /v1/latest and "
                                    "/v1/events (server-sent events).  It also speaks the Ollama (/api/generate, "
                                    "/api/chat, /api/tags) and OpenAI (/v1/chat/completions, /v1/models) protocols "
                                    "on the same port, as the model velm-BUNDLE (e.g. velm-photo), so Frigate, Home "
                                    "Assistant and Node-RED can use it as their image describer: the answer is the "
                                    "caption, not a reply to the prompt (README: 'Frigate, Home Assistant and "
                                    "Node-RED').  Loopback only unless --token is given; Ctrl-C or SIGTERM stops it.")
    sp.add_argument("source", nargs="?", default=None, help="an optional live source (as for run)")
    _bundle_options(sp)
    _resize_option(sp)
    _decode_flags(sp)
    add_fields(sp, ServiceOptions)
    add_flag(sp, "--loop", action="store_true", help="start a video file or image folder again at its end")

    sp = sub.add_parser("info", formatter_class=fmt, help="what a bundle holds",
                        description="Load a bundle (every check included) and report its manifest, graphs (inputs, "
                                    "outputs, operators), file sizes and measured quality and parity.")
    _bundle_options(sp, positional=True, device=False)
    sp.add_argument("--json", action="store_true", help="the report as JSON")

    sp = sub.add_parser("bench", formatter_class=fmt, help="time a bundle per stage on this machine",
                        description="Caption synthetic 640x480 frames and report median and p95 per stage "
                                    "(preprocess, vision, decode step, decode, caption), the interpreter's share "
                                    "and the Python glue, plus cold start and peak memory in fresh processes.")
    _bundle_options(sp, positional=True, isolate=False)
    _decode_flags(sp)
    add_flag(sp, "--against", default=None, metavar="OTHER",
             help="a second bundle to compare (e.g. float32), each with its own recommended decoding")
    add_flag(sp, "--images", type=int, default=50, help="frames to caption")
    add_flag(sp, "--frame", type=_frame_size, default=(640, 480), metavar="WxH",
             help="frame size: preprocessing (resizing) cost grows with it (default: 640x480)")
    add_flag(sp, "--cold-runs", type=int, default=5, help="fresh processes for the cold-start figure (0 = skip)")
    add_flag(sp, "--sweep-threads", type=_thread_counts, default=None, metavar="N,N,...",
             help="instead: time every pair of interpreter thread counts from this list for the vision and the "
                  "language graph (e.g. 1,2,4), to choose --threads and --language-threads for this machine")
    sp.add_argument("--json", action="store_true", help="the figures as JSON")

    sp = sub.add_parser("doctor", formatter_class=fmt, help="check this machine for the runtime",
                        description="Report interpreter packages and versions, the numpy ABI, the Edge TPU runtime "
                                    "and devices, OpenCV's build and video backends, picamera2, cameras, and "
                                    "whether both shipped bundles load and caption (the shapes bundle a synthetic "
                                    "scene, word for word).  Needs no hardware.")
    sp.add_argument("--json", action="store_true", help="the findings as JSON")

    sp = sub.add_parser("synth", formatter_class=fmt, help="write synthetic scenes and their captions",
                        description="Write procedurally generated scenes as image files plus captions.csv "
                                    "(columns image, caption): a caption set that 'velm-convert train --dataset "
                                    "csv' reads, or frames to try a model on.")
    add_flag(sp, "--out", required=True, help="output folder (created)")
    add_flag(sp, "--count", type=int, default=100, help="number of images")
    add_flag(sp, "--seed", type=int, default=0, help="first seed (scenes) or camera seed (--animated)")
    add_flag(sp, "--size", type=int, default=96, help="image side in pixels")
    add_flag(sp, "--format", choices=("png", "jpg"), default="png", help="image file format")
    add_flag(sp, "--animated", action="store_true", help="consecutive frames of the animated synthetic camera")
    add_flag(sp, "--fps", type=float, default=15.0, help="frame rate of the animated camera")
    add_flag(sp, "--hold-s", type=float, default=3.0, help="seconds each animated layout holds")
    return parser


COMMANDS = {"run": cmd_run, "serve": cmd_serve, "caption": cmd_caption, "detect": cmd_detect, "info": cmd_info,
            "bench": cmd_bench,
            "doctor": cmd_doctor,
            "synth": cmd_synth}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("velm-edge", COMMANDS[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
