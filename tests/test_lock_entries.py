"""Reading a video's dvc.lock: parsed again only when it changed, and a read that catches DVC
rewriting it is retried, not turned into an error page."""

import os
import threading
import time

import pytest
import yaml

from hvsa.campaign.workspace import lock_entries

LOCK = {
    "schema": "2.0",
    "stages": {"select@cam": {"outs": [{"path": "data/cam/r1/selected.parquet"}]}},
}


def test_an_unchanged_lock_is_read_once_and_a_rewritten_one_again(tmp_path):
    path = tmp_path / "dvc.lock"
    path.write_text(yaml.safe_dump(LOCK))
    first = lock_entries(path)
    assert first == LOCK["stages"]
    assert lock_entries(path) is first  # the cached parse
    changed = {"stages": {"finetune@cam": {"outs": [{"path": "data/cam/r1/model.pt"}]}}}
    path.write_text(yaml.safe_dump(changed))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert lock_entries(path) == changed["stages"]
    path.unlink()
    assert lock_entries(path) == {}
    assert lock_entries(path, yaml.safe_dump(LOCK)) == LOCK["stages"]  # given text, no file


def test_a_lock_caught_half_written_is_read_again(tmp_path):
    path = tmp_path / "dvc.lock"
    text = yaml.safe_dump(LOCK)
    path.write_text(text[: text.index("outs") + 6] + "\n- path: [unclosed")
    done = threading.Timer(0.06, lambda: path.write_text(text))
    done.start()
    try:
        assert lock_entries(path) == LOCK["stages"]
    finally:
        done.join()


def test_a_lock_that_never_parses_is_an_error(tmp_path):
    path = tmp_path / "dvc.lock"
    path.write_text("stages: [unclosed\n")
    with pytest.raises(yaml.YAMLError):
        lock_entries(path)
