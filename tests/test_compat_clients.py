"""``velm-edge serve`` as the describer of Frigate, Home Assistant and Node-RED, through the real client
libraries: the PyPI ``ollama`` and ``openai`` packages making the calls Frigate's providers make
(frigate/genai/ollama.py and openai.py), the npm ``ollama`` and ``openai`` packages, and Node-RED with
node-red-contrib-ollama running examples/node-red-flow.json headlessly.  Every one must get the caption
``velm-edge caption`` prints for the same photo.

The npm packages are pinned in tests/clients/package.json (and its lock file) and installed with
``npm ci`` on first use; those tests skip with the reason when node or npm is missing or the registry
cannot be reached.  The PyPI clients come with ``pip install -e .[dev]``.
"""

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from velm_edge.runtime.captioner import Captioner
from velm_edge.service.server import CaptionService, ServiceOptions

ollama = pytest.importorskip("ollama", reason="the PyPI ollama client is not installed: pip install -e .[dev]")
openai = pytest.importorskip("openai", reason="the PyPI openai client is not installed: pip install -e .[dev]")

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "tests" / "clients"
PHOTOS = sorted((ROOT / "velm_edge" / "samples").glob("*.jpg"))
TOKEN = "frigate-key"
MODEL = "velm-photo"


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    """What ``velm-edge caption`` prints for each sample photo (photo bundle, its shipped decoding)."""
    run = subprocess.run([sys.executable, "-m", "velm_edge.tools.cli", "caption", "--json", *map(str, PHOTOS)],
                         capture_output=True, text=True, timeout=300, check=True)
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {Path(a["image"]).name: a["text"] for a in answers}


@pytest.fixture(scope="module")
def served():
    with Captioner.open("photo") as captioner, \
            CaptionService(captioner, ServiceOptions(port=0, workers=2, timeout_s=30)) as service:
        yield service


@pytest.fixture(scope="module")
def guarded():
    with Captioner.open("photo") as captioner, \
            CaptionService(captioner, ServiceOptions(port=0, workers=1, token=TOKEN, timeout_s=30)) as service:
        yield service


# -- Frigate's two providers, call for call ------------------------------------------------------------------

def test_frigate_ollama_provider(served, expected):
    """frigate/genai/ollama.py: Client(host, timeout, headers), show() at start-up, then generate() with the
    photo's bytes and Frigate's options; list() for the model picker."""
    client = ollama.Client(host=served.url, timeout=60, headers=None)
    assert not client.show(MODEL).get("error")
    assert [m.get("name", m.get("model", "")) for m in client.list().get("models", [])] == [f"{MODEL}:latest"]
    for photo in PHOTOS:
        result = client.generate(MODEL, "Describe the object in the photo.", images=[photo.read_bytes()],
                                 options={"temperature": 0.5, "repeat_penalty": 1.05, "presence_penalty": 0.3})
        assert str(result["response"]).strip() == expected[photo.name]
        assert result.get("done") and result.get("eval_count") > 0


def test_frigate_openai_provider(served, expected):
    """frigate/genai/openai.py: OpenAI(api_key, base_url), chat.completions.create with a text part and
    data:image/jpeg;base64 image_url parts (detail low) and a timeout; models.list() for the picker."""
    client = openai.OpenAI(api_key="anything", base_url=served.url + "/v1")
    assert sorted(m.id for m in client.models.list().data) == [MODEL]
    for photo in PHOTOS:
        encoded = base64.b64encode(photo.read_bytes()).decode("utf-8")
        result = client.chat.completions.create(model=MODEL, timeout=60, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe the object in the photo."},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}", "detail": "low"}}]}])
        assert result.choices[0].message.content.strip() == expected[photo.name]
        assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens == 0


def test_frigate_review_summaries_ask_for_a_schema_and_get_a_clear_error(served):
    """Frigate's review summaries send a JSON schema (Ollama ``format``, OpenAI ``response_format``): a
    captioner cannot fill one, and both clients raise a clear 400 instead of parsing invalid JSON."""
    schema = {"type": "object", "properties": {"scene": {"type": "string"}}, "required": ["scene"]}
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=served.url).generate(MODEL, "x", images=[PHOTOS[0].read_bytes()], format=schema)
    assert refused.value.status_code == 400 and "JSON schema" in refused.value.error
    with pytest.raises(openai.BadRequestError, match="cannot be followed"):
        openai.OpenAI(api_key="x", base_url=served.url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "review", "schema": schema}})


def test_a_token_is_sent_by_both_clients_and_required(guarded, expected):
    photo = PHOTOS[0]
    client = ollama.Client(host=guarded.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert client.generate(MODEL, "x", images=[photo.read_bytes()])["response"] == expected[photo.name]
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=guarded.url).list()
    assert refused.value.status_code == 401
    assert [m.id for m in openai.OpenAI(api_key=TOKEN, base_url=guarded.url).models.list().data] == [MODEL]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="wrong", base_url=guarded.url, max_retries=0).models.list()


# -- Home Assistant: the Ollama integration (streamed chat) and LLM Vision (chat, stream false) -----------------

def test_home_assistant_chat_streamed_and_not(served, expected):
    client = ollama.Client(host=served.url)
    photo = PHOTOS[1]
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is in this image?", "images": [photo.read_bytes()]}]
    streamed = "".join(part.message.content for part in client.chat(MODEL, messages=messages, stream=True,
                                                                     keep_alive=-1, options={"num_ctx": 8192}))
    assert streamed == expected[photo.name]
    assert client.chat(MODEL, messages=messages, stream=False).message.content == expected[photo.name]
    hello = client.chat(MODEL, messages=[{"role": "user", "content": "Hi"}], stream=False).message.content
    assert "cannot answer text" in hello  # LLM Vision validates a server with a text-only "Hi": a 200, explained


# -- npm clients and Node-RED -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_modules() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the npm clients and Node-RED (Debian: apt-get install nodejs npm)")
    modules = CLIENTS / "node_modules"
    if not (modules / ".package-lock.json").exists():
        run = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENTS,
                             capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            pytest.skip(f"npm ci in tests/clients failed (no registry?): {run.stderr.strip()[-300:]}")
    return modules


def node(script: str, *args: str) -> dict:
    run = subprocess.run(["node", str(CLIENTS / script), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_the_npm_ollama_client(node_modules, served, expected):
    photo = PHOTOS[2]
    got = node("ollama_client.mjs", served.url, MODEL, str(photo))
    assert got["models"] == [f"{MODEL}:latest"] and "vision" in got["capabilities"]
    assert [got[k] for k in ("generate", "generate_stream", "chat", "chat_stream")] == [expected[photo.name]] * 4
    assert got["unknown_model"]["status"] == 404


def test_the_npm_openai_client(node_modules, served, expected):
    photo = PHOTOS[3]
    for base in (served.url + "/v1", served.url):
        got = node("openai_client.mjs", base, MODEL, str(photo))
        assert got["models"] == [MODEL]
        assert got["chat"] == got["chat_stream"] == expected[photo.name]
        assert got["usage"]["completion_tokens"] > 0 and got["unknown_model"] == {"status": 404,
                                                                                 "code": "model_not_found"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_node_red_flow_captions_a_snapshot(node_modules, served, expected, tmp_path):
    """examples/node-red-flow.json as a user would paste it, pointed at the service and a photo, and one node
    added to write each caption to a file; Node-RED runs headlessly until the caption appears."""
    photo = PHOTOS[0]
    flow = json.loads((ROOT / "examples" / "node-red-flow.json").read_text())
    nodes = {n["id"]: n for n in flow}
    nodes["velm-server"].update(host="127.0.0.1", port=str(served.port))
    nodes["velm-read"]["filename"] = str(photo)
    nodes["velm-inject"].update(repeat="", onceDelay="0.5")
    out = tmp_path / "captions.txt"
    nodes["velm-generate"]["wires"][0].append("test-text")
    flow += [{"id": "test-text", "type": "function", "z": "velm-tab", "func": "msg.payload = msg.payload.response;"
              "\nreturn msg;", "outputs": 1, "wires": [["test-file"]]},
             {"id": "test-file", "type": "file", "z": "velm-tab", "filename": str(out), "filenameType": "str",
              "appendNewline": True, "createDir": False, "overwriteFile": "false", "encoding": "utf8", "wires": [[]]}]
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    (user_dir / "node_modules").symlink_to(node_modules)
    (tmp_path / "flows.json").write_text(json.dumps(flow))
    proc = subprocess.Popen(["node", str(node_modules / "node-red" / "red.js"), "--userDir", str(user_dir),
                             "--port", str(free_port()), str(tmp_path / "flows.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out.exists() and out.read_text().endswith("\n")) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert out.exists(), f"no caption from Node-RED within 90 s; its log:\n{log[-3000:]}"
    assert out.read_text().splitlines() == [expected[photo.name]]
