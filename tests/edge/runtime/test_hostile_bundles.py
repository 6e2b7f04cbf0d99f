""">= 1000 malformed bundles, each refused with BundleError or contained by the isolated probe,
with this process alive.  Run with -s to see the tally."""

import shutil
from collections import Counter

import numpy as np
import pytest
from bundle_mutations import mutations

from velm_edge.errors import BundleError
from velm_edge.runtime.bundle import Bundle
from velm_edge.runtime.captioner import Captioner
from velm_edge.runtime.isolate import probe
from velm_edge.runtime.options import RuntimeOptions

FRAME = np.full((60, 80, 3), 100, np.uint8)


def judge(root, mutation) -> str:
    digest = None
    if mutation.touches_graph:  # changed graph bytes that match the manifest: only a child may parse them first
        try:
            digest = probe(root, timeout_s=20)["manifest_sha256"]
        except BundleError as e:
            return "contained" if "crashed" in str(e) or "did not finish" in str(e) else "refused"
    try:
        with Captioner(Bundle.load(root, digest), RuntimeOptions(threads=1)) as cap:
            assert isinstance(cap.caption(FRAME).text, str)
        return "accepted"
    except BundleError:
        return "refused"


def judge_all(good, todo, tmp_path) -> tuple[Counter, list[str], list[str]]:
    """Each mutation applied to a fresh copy of ``good`` and judged: the (kind, outcome) tally, the mutations
    accepted although no loader may accept them, and anything but BundleError that escaped the loader."""
    tally, wrongly_accepted, unexpected = Counter(), [], []
    for i, m in enumerate(todo):
        root = tmp_path / f"m{i}.velm"
        shutil.copytree(good, root)
        m.apply(root)
        try:
            outcome = judge(root, m)
        except Exception as e:  # anything but BundleError escaping the loader is a failure to report
            unexpected.append(f"{m.kind}: {m.detail}: {type(e).__name__}: {e}")
            continue
        finally:
            shutil.rmtree(root, ignore_errors=True)
        tally[(m.kind, outcome)] += 1
        if outcome == "accepted" and m.must_refuse:
            wrongly_accepted.append(f"{m.kind}: {m.detail}")
    return tally, wrongly_accepted, unexpected


@pytest.mark.slow
def test_a_thousand_malformed_bundles_are_refused_or_contained(shapes_bundle, tmp_path):
    todo = mutations(shapes_bundle)
    assert len(todo) >= 1000
    probed = sum(m.touches_graph for m in todo)
    tally, wrongly_accepted, unexpected = judge_all(shapes_bundle, todo, tmp_path)
    must = sum(m.must_refuse for m in todo)
    print(f"\n{len(todo)} malformed bundles, {must} that no loader may accept, {probed} through the isolated probe; "
          f"contained crashes: {sum(v for (_, o), v in tally.items() if o == 'contained')}; outcomes:",
          dict(sorted(tally.items())))
    assert not unexpected, unexpected[:10]
    assert not wrongly_accepted, wrongly_accepted[:10]


@pytest.mark.slow
def test_a_damaged_detector_graph_or_section_is_refused_or_contained(tmp_path):
    from bundle_mutations import detector_mutations

    from velm_edge.runtime.bundle import SHIPPED

    todo = detector_mutations(SHIPPED["photo"])
    assert len(todo) >= 90
    tally, wrongly_accepted, unexpected = judge_all(SHIPPED["photo"], todo, tmp_path)
    print(f"\n{len(todo)} damaged detectors: {dict(sorted(tally.items()))}")
    assert not unexpected, unexpected[:10]
    assert not wrongly_accepted, wrongly_accepted[:10]
