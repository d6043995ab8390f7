"""Each DVC stage depends on a fingerprint of the hvsa code it runs."""

from hvsa.campaign import fingerprint
from hvsa.campaign.fingerprint import PACKAGE, closure, stage_fingerprint, write_fingerprints


def _names(stage):
    return {str(p.relative_to(PACKAGE)) for p in closure(f"hvsa.campaign.stages.{stage}")}


def test_a_stage_covers_the_code_it_imports_and_nothing_else():
    flow, labels = _names("flow"), _names("labels")
    assert {"campaign/stages/flow.py", "method/motion.py", "campaign/stages/__init__.py"} <= flow
    assert "method/fusion.py" not in flow and "rounds/engine.py" not in flow
    assert {"method/fusion.py", "rounds/engine.py", "method/calibrate.py"} <= labels
    assert not any(n.startswith(("app/", "benchmark/")) for n in flow | labels)


def test_fingerprints_change_with_the_code_and_only_then(tmp_path, monkeypatch):
    write_fingerprints(tmp_path)
    files = sorted((tmp_path / ".hvsa" / "code").glob("*.sha256"))
    assert [f.stem for f in files] == sorted(fingerprint.STAGES)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    write_fingerprints(tmp_path)  # the same code: nothing rewritten, DVC sees nothing new
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    before = stage_fingerprint("labels")
    real = fingerprint.Path.read_bytes

    def edited(path):
        data = real(path)
        return data + b"\n# edited\n" if path.name == "fusion.py" else data

    monkeypatch.setattr(fingerprint.Path, "read_bytes", edited)
    assert stage_fingerprint("labels") != before, "a changed fusion reruns labels"
    flow = (tmp_path / ".hvsa" / "code" / "flow.sha256").read_text().strip()
    assert stage_fingerprint("flow") == flow, "a changed fusion does not rerun the flow"
