"""One spec parser refusing unknown keys, sinks that are all stopped however a run ends, kebab-case
flags with their old spellings, each default shown once, and one error family behind one exit code."""

import json
import subprocess
import sys

import pytest

from velm_edge.errors import BundleError, OptionError, SinkError, SourceError, VelmError
from velm_edge.live import pipeline
from velm_edge.live.events import CaptionEvent
from velm_edge.live.options import LiveOptions
from velm_edge.live.sources import SOURCE_KINDS, SynthSource, open_source
from velm_edge.sinks.base import Sink
from velm_edge.sinks.jsonl import JsonlSink
from velm_edge.sinks.kinds import SINK_KINDS, open_sink
from velm_edge.tools import cli


@pytest.mark.parametrize("spec, known", [
    ("video:x.mp4?fsp=10", "known: fps"),
    ("kiosk:?prot=1", "known: token, jpeg_quality, max_clients"),
    ("srt:subs.srt?last=3", "known: last_s"),
    ("speak?voice=en", "known: hold"),
    ("jsonl:out.jsonl?flush=1", "known: none"),
    ("mqtt://localhost/captions?qoss=1", "known: qos, client_id"),
])
def test_a_sink_spec_with_an_unknown_key_is_refused_with_the_known_ones(spec, known):
    with pytest.raises(OptionError, match=f"unknown option .*; {known}"):
        open_sink(spec)


def test_source_specs_are_parsed_by_the_same_rules():
    with pytest.raises(OptionError, match="unknown option fsp; known: fps, size, seed, hold_s, frames, render"):
        open_source("synth:?fsp=10")
    with pytest.raises(OptionError, match="fps must be float, got 'fast'"):
        open_source("synth:?fps=fast")
    source = open_source("synth:?fps=7.5&size=64&frames=3")
    assert (source.fps, source.size, source.frames) == (7.5, 64, 3)


def test_typed_values_reach_the_sink():
    sink = open_sink("video:out.mp4?fps=30")
    assert sink.fps == 30.0
    with pytest.raises(OptionError, match="fps must be float, got 'x'"):
        open_sink("video:out.mp4?fps=x")


def test_every_kind_has_usage_text_that_help_and_errors_reuse():
    text = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "run", "--help"], capture_output=True,
                          text=True, timeout=60).stdout
    flat = "".join(text.split())  # argparse wraps lines, also after hyphens
    for kind in (*SOURCE_KINDS, *SINK_KINDS):
        assert "".join(kind.usage().split()) in flat, kind.name
    with pytest.raises(OptionError) as refused:
        open_sink("screen")
    assert all(k.form in str(refused.value) for k in SINK_KINDS)


class Broken(Sink):
    """A sink whose stop fails, after the captions it was given."""

    def __init__(self):
        self.events = 0

    def write(self, event):
        self.events += 1

    def stop(self):
        raise OSError("the disk went away while closing")


def test_a_sink_whose_stop_raises_does_not_keep_the_others_from_flushing(captioner, tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.srt"
    broken = Broken()
    sinks = [JsonlSink(str(first)), broken, open_sink(f"srt:{second}")]
    source = SynthSource(fps=30, size=80, frames=20, realtime=False)
    source.live = False  # every frame is handed over: 6 captions however slowly the interpreter runs (it raced)
    with pytest.raises(OSError, match="disk went away"):
        pipeline.run(source, captioner, sinks, LiveOptions(max_frames=6))
    lines = first.read_text().splitlines()
    assert len(lines) == broken.events == 6 and all(json.loads(line)["text"] for line in lines)
    assert second.read_text().rstrip().endswith(json.loads(lines[-1])["text"])  # the last cue, written at stop


def test_a_sink_must_say_how_it_writes():
    class Nothing(Sink):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Nothing()


def test_a_caption_event_is_typed_and_its_json_keeps_only_what_is_set(captioner):
    event = next(pipeline.captions(SynthSource(fps=30, size=80, frames=5, realtime=False), captioner))
    assert isinstance(event, CaptionEvent) and isinstance(event.tokens, tuple)
    out = event.to_json()
    assert out["text"] == event.text and out["tokens"] == list(event.tokens) and out["truth"] == event.truth
    assert "image" not in out and "skipped" not in out  # not a file, no gate
    assert json.loads(json.dumps(out)) == out


def test_the_error_family():
    for error in (BundleError, OptionError, SourceError, SinkError):
        assert issubclass(error, VelmError)
    assert issubclass(BundleError, ValueError) and issubclass(SourceError, RuntimeError)  # what they used to be


def test_kebab_case_flags_with_the_old_spellings_as_hidden_aliases():
    parser = cli.build_parser()
    new = parser.parse_args(["run", "synth:", "--max-frames", "3", "--beam-size", "2", "--gate-interval", "1"])
    old = parser.parse_args(["run", "synth:", "--max_frames", "3", "--beam_size", "2", "--gate_interval", "1"])
    assert vars(new) == vars(old) and new.max_frames == 3 and new.beam_size == 2 and new.gate_interval_s == 1.0


@pytest.mark.parametrize("command", ["run", "caption", "info", "bench", "synth"])
def test_help_shows_kebab_flags_and_each_default_once(command):
    import re

    text = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", command, "--help"], capture_output=True,
                          text=True, timeout=60).stdout
    assert text.startswith("usage: velm-edge " + command)
    assert not re.findall(r"--\w+_\w+", text), "an underscore flag is shown"
    entries = re.split(r"\n  (?=-)", text)  # one entry per option
    for entry in entries:
        assert entry.count("(default") <= 1, entry


def test_user_errors_are_one_line_and_exit_1_and_debug_shows_the_traceback(tmp_path):
    run = [sys.executable, "-m", "velm_edge.tools.cli"]
    plain = subprocess.run([*run, "run", "synth:?fsp=3"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and plain.stderr.strip().count("\n") == 0
    assert "velm-edge run: error: synth:?fsp=3: unknown option fsp; known: fps" in plain.stderr
    debug = subprocess.run([*run, "--debug", "run", "synth:?fsp=3"], capture_output=True, text=True, timeout=60)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "OptionError" in debug.stderr


def test_a_bug_is_not_hidden_behind_an_error_line(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "doctor", lambda args: {}["no such key"])
    with pytest.raises(KeyError):
        cli.main(["doctor"])
