"""The arm64 Debian Bookworm sources for scripts/pi_check.sh, taken from this machine's apt configuration.

    python3 scripts/debian_sources.py [APT_DIR]       # default /etc/apt; prints a sources.list on stdout

The Debian mirrors this machine already uses (a local mirror, a snapshot, a proxy-friendly host) are
kept: the first ``deb`` entry for a Debian archive (``.../debian``) and the first for its security
archive (a ``-security`` suite), from ``sources.list``, ``sources.list.d/*.list`` and deb822
``sources.list.d/*.sources``.  Only where the machine names none does deb.debian.org stand in.  apt's
proxy settings (apt.conf) are read by pi_check's apt-get as usual.
"""

from __future__ import annotations

import sys
from pathlib import Path

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
FALLBACK = {"main": "http://deb.debian.org/debian", "security": "http://deb.debian.org/debian-security"}
RELEASE = "bookworm"  # Raspberry Pi OS's base


def entries(apt_dir: Path) -> list[tuple[str, str]]:
    """(uri, suite) of every enabled binary (``deb``) source, in apt's reading order."""
    found = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb":
                rest = words[1:]
                if rest[0].startswith("["):  # options: [arch=... signed-by=...]
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if len(rest) >= 2:
                    found.append((rest[0], rest[1]))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.strip() and not line.lstrip().startswith("#") and ":" in line and not line[0].isspace():
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                suites = fields.get("suites", "").split()
                found += [(uri, suite) for uri in fields.get("uris", "").split() for suite in suites]
    return found


def mirrors(apt_dir: Path) -> dict[str, str]:
    """The Debian archive and security archive this machine uses, else deb.debian.org."""
    chosen = {}
    for uri, suite in entries(apt_dir):
        uri = uri.rstrip("/")
        if suite.endswith("-security") or uri.endswith("-security"):
            chosen.setdefault("security", uri)
        elif uri.endswith("/debian") and not suite.startswith(("focal", "jammy", "noble")):
            chosen.setdefault("main", uri)
    return {**FALLBACK, **chosen}


def sources_list(apt_dir: Path) -> str:
    m = mirrors(apt_dir)
    opts = f"[arch=arm64 signed-by={KEYRING}]"
    return (f"deb {opts} {m['main']} {RELEASE} main\n"
            f"deb {opts} {m['main']} {RELEASE}-updates main\n"
            f"deb {opts} {m['security']} {RELEASE}-security main\n")


if __name__ == "__main__":
    sys.stdout.write(sources_list(Path(sys.argv[1] if len(sys.argv) > 1 else "/etc/apt")))
