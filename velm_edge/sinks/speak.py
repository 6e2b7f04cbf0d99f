"""The ``speak[:VOICE]`` sink: steady captions read aloud by espeak-ng, never more than one at a time.

Only captions that the stabilizer announces (the same result ``hold`` times in a row) are spoken, so a
flickering caption is not read out.  Speech runs in its own process; while it talks, newer captions
replace one another and only the newest is spoken next.
"""

from __future__ import annotations

import shutil
import subprocess

from velm_edge.errors import SinkError
from velm_edge.live.events import CaptionEvent, Stabilizer
from velm_edge.sinks.base import Sink


class SpeakSink(Sink):
    def __init__(self, voice: str | None = None, hold: int = 3, program: str = "espeak-ng"):
        exe = shutil.which(program)
        if exe is None:
            raise SinkError(f"the speak sink needs {program}: sudo apt install espeak-ng")
        self.exe, self.voice, self.name = exe, voice, f"speak:{voice or ''}"
        self.stabilizer = Stabilizer(hold)
        self.spoken: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._pending: str | None = None

    def _say(self, text: str) -> None:
        args = [self.exe, *(["-v", self.voice] if self.voice else []), "--", text]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        self.spoken.append(text)

    def _busy(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def write(self, event: CaptionEvent) -> None:
        if self.stabilizer.update(event.text):
            self._pending = event.text
        if self._pending is not None and not self._busy():
            self._say(self._pending)
            self._pending = None

    def _finish(self, timeout: float) -> None:
        """Let the current utterance end within ``timeout`` seconds, else cut it off."""
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def stop(self, timeout: float = 5.0) -> None:
        """Say the last pending caption, waiting at most ``timeout`` seconds per utterance; never raises."""
        if self._pending is not None:
            self._finish(timeout)
            self._say(self._pending)
            self._pending = None
        self._finish(timeout)
