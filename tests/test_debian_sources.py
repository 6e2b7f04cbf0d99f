"""scripts/pi_check.sh takes its arm64 Debian sources from the machine's apt configuration (deb.debian.org only
where the machine names no Debian mirror)."""

from pathlib import Path

from velm_edge.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
debian_sources = load_script(ROOT / "scripts" / "debian_sources.py")


def apt_dir(tmp_path, sources_list="", parts=None):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return tmp_path


def test_a_local_mirror_in_deb822_form_is_used(tmp_path):
    d = apt_dir(tmp_path, parts={
        "other.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
        "debian.sources": "Types: deb\n# a comment\nURIs: http://mirror.local/debian/\n"
                          "Suites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.local/debian-security\n"
                          "Suites: bookworm-security\nComponents: main\n",
        "off.sources": "Enabled: no\nTypes: deb\nURIs: http://disabled/debian\nSuites: bookworm\n"})
    text = debian_sources.sources_list(d)
    assert text.splitlines() == [
        f"deb [arch=arm64 signed-by={debian_sources.KEYRING}] http://mirror.local/debian bookworm main",
        f"deb [arch=arm64 signed-by={debian_sources.KEYRING}] http://mirror.local/debian bookworm-updates main",
        f"deb [arch=arm64 signed-by={debian_sources.KEYRING}] http://mirror.local/debian-security bookworm-security "
        "main"]


def test_one_line_sources_with_options_are_read(tmp_path):
    d = apt_dir(tmp_path, "# old style\ndeb [arch=amd64 signed-by=/k.gpg] http://snapshot.example/archive/debian "
                          "bookworm main\ndeb-src http://src.example/debian bookworm main\n")
    m = debian_sources.mirrors(d)
    assert m["main"] == "http://snapshot.example/archive/debian"
    assert m["security"] == debian_sources.FALLBACK["security"]  # none named: the fallback


def test_without_any_debian_source_deb_debian_org_stands_in(tmp_path):
    assert debian_sources.mirrors(apt_dir(tmp_path)) == debian_sources.FALLBACK
