"""The house's rules, checked over the source: no import cycles, each room imports only what its
``__init__`` docstring allows, and the README's layout map lists exactly the modules in the tree."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("velm_edge", "velm_convert")


def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package's __init__ under the package's name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a module imports, at module level or inside functions (imports for type checkers
    only are left out: they never run)."""
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # "from velm_edge.synth import scenes" imports the module velm_edge.synth.scenes
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def test_there_is_no_import_cycle(graph):
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


ALLOWED = {  # room -> what its modules may import besides their own room (as each room's __init__ says)
    "velm_edge.runtime": {"velm_edge.errors"},
    "velm_edge.live": {"velm_edge.errors", "velm_edge.specs", "velm_edge.runtime", "velm_edge.synth"},
    "velm_edge.sinks": {"velm_edge.errors", "velm_edge.specs", "velm_edge.httpd", "velm_edge.live.events",
                        "velm_edge.runtime.preprocess"},
    "velm_edge.service": {"velm_edge.errors", "velm_edge.specs", "velm_edge.httpd", "velm_edge.runtime",
                          "velm_edge.live"},
    "velm_edge.testing": {"velm_edge.errors", "velm_edge.live"},
    "velm_edge.samples": set(),
    "velm_edge.synth": {"velm_edge.errors"},
}


def _inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_what_it_may(graph, room):
    wrong = {}
    for module, deps in graph.items():
        if not _inside(module, room):
            continue
        bad = {d for d in deps if d != "velm_edge" and not _inside(d, room)
               and not any(_inside(d, ok) for ok in ALLOWED[room])}
        if bad:
            wrong[module] = sorted(bad)
    assert not wrong, f"{room} imports outside its rules: {wrong}"


def test_the_events_module_is_all_sinks_see_of_the_live_room(graph):
    from_live = {d for m, deps in graph.items() if _inside(m, "velm_edge.sinks") for d in deps
                 if _inside(d, "velm_edge.live")}
    assert from_live == {"velm_edge.live.events"}


@pytest.mark.parametrize("room", ["runtime", "live", "sinks", "service", "tools", "testing", "samples", "synth"])
def test_each_room_says_what_it_does_and_may_import(room):
    doc = ast.get_docstring(ast.parse((ROOT / "velm_edge" / room / "__init__.py").read_text()))
    assert doc and "May import" in doc, f"velm_edge/{room}/__init__.py must say what the room may import"


def test_the_readme_layout_map_lists_exactly_the_tree():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- layout -->\n```text\n(.*?)```", text, re.S)
    assert block, "README.md has no layout map (```text after <!-- layout -->)"
    listed, folder = set(), []
    for line in block.group(1).splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        folder = folder[:depth]
        if name.endswith("/"):
            folder.append(name.rstrip("/"))
        elif name.endswith(".py"):
            listed.add("/".join([*folder, name]))
    actual = {str(p.relative_to(ROOT)) for p in modules().values()}
    assert listed == actual, (f"missing from the README map: {sorted(actual - listed)}; "
                              f"in the map but not in the tree: {sorted(listed - actual)}")


def test_the_public_names_keep_working():
    import velm_edge

    before = ("Captioner", "Caption", "DecodeOptions", "BundleError", "DEFAULT_BUNDLE", "live_captions",
              "PushCaptioner")
    added = ("RuntimeOptions", "LiveOptions", "CaptionEvent", "VelmError", "OptionError", "FrameError", "SourceError",
             "Detection", "DetectOptions")
    for name in (*before, *added):
        assert name in velm_edge.__all__ and getattr(velm_edge, name) is not None, name


def test_every_decode_option_is_defined_once_and_reaches_the_cli_the_service_and_the_converter():
    import dataclasses

    from velm_convert import cli as convert_cli
    from velm_edge.runtime.decode import DecodeOptions
    from velm_edge.service.server import DECODE_KEYS
    from velm_edge.tools import cli as edge_cli

    fields = dataclasses.fields(DecodeOptions)
    assert all(f.metadata.get("help") for f in fields)  # the one definition: a field with its help
    names = [f.name for f in fields]
    assert [(k.name, k.help) for k in DECODE_KEYS] == [(f.name, f.metadata["help"]) for f in fields]  # the service

    def flags(parser, command):
        sub = next(a for a in parser._actions if a.choices and command in a.choices).choices[command]
        return {option for action in sub._actions for option in action.option_strings}

    for command in ("caption", "run", "serve", "bench"):  # velm-edge
        assert {"--" + n.replace("_", "-") for n in names} <= flags(edge_cli.build_parser(), command), command
    converter = convert_cli.build_parser()
    for command in ("evaluate", "caption"):  # the float model: no classifier to ground with, no clock
        wanted = {"--" + n.replace("_", "-") for n in names if n not in convert_cli.FLOAT_SKIPS}
        assert wanted <= flags(converter, command), command
    assert {"--" + n.replace("_", "-") for n in names if n != "time_budget_ms"} <= flags(converter, "export")
    # and nowhere else: no hand-written flag or query key for a decode option in the product's code (a recipe's
    # command lines may use the flags; they do not define them)
    for path in (*ROOT.joinpath("velm_edge").rglob("*.py"), *ROOT.joinpath("velm_convert").rglob("*.py")):
        text = path.read_text()
        for n in names:
            defined = rf'add_(flag|argument)\([^)]*"--{n.replace("_", "-")}"|Key\("{n}"'
            assert not re.search(defined, text), (path, n)


def test_the_device_tests_mirror_the_rooms():
    """tests/edge (no TensorFlow, also run under tflite-runtime) has a folder per velm_edge room it tests."""
    rooms = {p.parent.name for p in (ROOT / "velm_edge").glob("*/__init__.py")}
    folders = {p.name for p in (ROOT / "tests" / "edge").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders and folders <= rooms, sorted(folders - rooms)
