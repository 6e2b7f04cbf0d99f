"""Interpreter packages and devices: one place picks them, and says clearly what is missing."""

import builtins

import pytest

from velm_edge.errors import EdgeTPUError
from velm_edge.runtime import backend
from velm_edge.runtime.options import Device, RuntimeOptions


def test_device_strings():
    assert Device.parse("cpu") == Device("cpu")
    assert Device.parse("auto") == Device("auto")
    assert Device.parse("edgetpu") == Device("edgetpu")
    assert Device.parse("usb:1") == Device("edgetpu", "usb:1")
    assert Device.parse("pci") == Device("edgetpu", "pci")
    for bad in ("gpu", "usb:x", "cpu:0", "", "usb:"):
        with pytest.raises(ValueError, match="device must be cpu, auto, edgetpu, usb, usb:N, pci or pci:N"):
            Device.parse(bad)


def model_bytes(shapes_bundle):
    return (shapes_bundle / "language.tflite").read_bytes()


def test_an_edge_tpu_asked_for_explicitly_fails_clearly_without_one(shapes_bundle):
    with pytest.raises(EdgeTPUError, match=r"Edge TPU runtime libedgetpu\.so\.1 not found.*libedgetpu1-std"):
        backend.make_interpreter(model_bytes(shapes_bundle), RuntimeOptions(device="usb:0"))


def test_auto_falls_back_to_the_cpu_with_a_warning(shapes_bundle):
    with pytest.warns(RuntimeWarning, match="no Edge TPU, running on the CPU"):
        interpreter, info = backend.make_interpreter(model_bytes(shapes_bundle), RuntimeOptions(device="auto"))
    assert info["device"] == "cpu"
    assert interpreter.get_signature_list()


def test_unknown_backend_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.interpreter_module("onnx")
    real_import = builtins.__import__

    def no_interpreters(name, *args, **kwargs):
        if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_interpreters)
    monkeypatch.setattr(backend.importlib, "import_module", lambda name: no_interpreters(name))
    with pytest.raises(ImportError, match=r"pip install 'velm-edge\[litert\]' or pip install 'velm-edge\[tflite\]'"):
        backend.interpreter_module("auto")
    with pytest.raises(ImportError, match=r"Install one: pip install 'velm-edge\[tflite\]'"):
        backend.interpreter_module("tflite_runtime")


def test_threads_are_placed_per_graph_by_default(monkeypatch):
    from velm_edge.runtime import options

    monkeypatch.setattr(options, "usable_cores", lambda: 2)
    assert (RuntimeOptions().for_vision().threads, RuntimeOptions().for_language().threads) == (2, 1)
    assert RuntimeOptions().sharing(2).for_vision().threads == 1  # the vision-ahead thread beside the decoder
    monkeypatch.setattr(options, "usable_cores", lambda: 16)
    assert RuntimeOptions().for_vision().threads == options.MAX_AUTO_THREADS
    assert RuntimeOptions().sharing(2).for_vision().threads == 2
    chosen = RuntimeOptions(threads=3, language_threads=2)
    assert (chosen.sharing(4).for_vision().threads, chosen.for_language().threads) == (3, 2)  # what is set stays


def test_the_captioner_gives_each_graph_its_threads(shapes_bundle):
    from velm_edge.runtime.captioner import Captioner

    with Captioner.open(shapes_bundle, RuntimeOptions(threads=2)) as cap:
        assert (cap.vision.threads, cap.language.threads) == (2, 1)
