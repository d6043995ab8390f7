"""Long videos in bounded memory: chunked arrays on disk, the flow cache computed in resumable
chunks, frames read when used, and a run over a lazily read video giving the same labels as
one over the video in memory."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hvsa.cli import main
from hvsa.data.chunks import Appender, ChunkStore, LazyFrames
from hvsa.data.video import load_video
from hvsa.errors import HvsaError
from hvsa.method import motion
from hvsa.method.motion import compute_flow, load_or_compute_flow
from tests.conftest import run_args, tiny_config


def test_chunk_store_writes_whole_chunks_and_resumes(tmp_path):
    data = np.arange(7 * 3 * 2, dtype=np.float32).reshape(7, 3, 2)
    store = ChunkStore.create(tmp_path / "a", data.shape, np.float16, chunk=3)
    assert store.chunks == 3 and store.missing() == [0, 1, 2]
    store.write(0, data[:3])
    store.write(2, data[6:])
    with pytest.raises(ValueError, match="must be"):
        store.write(1, data[3:5])
    # reopened with the same layout: whole chunks are kept, only the missing one is left
    again = ChunkStore.create(tmp_path / "a", data.shape, np.float16, chunk=3)
    assert again.missing() == [1]
    with pytest.raises(HvsaError, match="incomplete"):
        again.lazy()
    again.write(1, data[3:6])
    lazy = again.lazy(convert=np.float32)
    assert lazy.dtype == np.float32 and lazy.shape == data.shape
    np.testing.assert_array_equal(np.asarray(lazy), data)
    # another layout starts over
    other = ChunkStore.create(tmp_path / "a", data.shape, np.float16, chunk=2)
    assert other.missing() == [0, 1, 2, 3]
    (tmp_path / "a" / "000000.npy").write_bytes(b"not an array")
    with pytest.raises(HvsaError, match="000000.npy is damaged"):
        other.read(0)


def test_lazy_frames_index_like_an_array_and_keep_few_blocks(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (10, 4, 5, 3), dtype=np.uint8)
    loads = []

    def load(b):
        loads.append(b)
        return data[b * 2 : b * 2 + 2]

    one_block = data[:2].nbytes / 2**20
    lazy = LazyFrames(data.shape, np.uint8, load, block=2, cache_mb=one_block * 2)
    assert len(lazy) == 10 and lazy.ndim == 4 and lazy.nbytes == data.nbytes
    np.testing.assert_array_equal(lazy[3], data[3])
    np.testing.assert_array_equal(lazy[-1], data[-1])
    np.testing.assert_array_equal(lazy[2:7], data[2:7])
    np.testing.assert_array_equal(lazy[[9, 0, 4]], data[[9, 0, 4]])
    mask = np.zeros(10, bool)
    mask[[1, 8]] = True
    np.testing.assert_array_equal(lazy[mask], data[mask])
    np.testing.assert_array_equal(lazy[4, 1:3, :, 0], data[4, 1:3, :, 0])
    np.testing.assert_array_equal(np.stack(list(lazy)), data)
    assert len(lazy._cache) <= 2  # two blocks' worth of cache: never more held
    with pytest.raises(IndexError):
        lazy[10]
    loads.clear()
    lazy[9], lazy[8], lazy[9]
    assert loads == []  # the last blocks read are kept


def test_appender_builds_a_store_of_unknown_length(tmp_path):
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(5)]
    out = Appender(tmp_path / "s", (4, 5, 3), np.uint8, chunk=2)
    for f in frames:
        out.append(f)
    with pytest.raises(HvsaError, match="not"):
        out.append(np.zeros((3, 3, 3), np.uint8))
    store = out.close()
    assert store.shape == (5, 4, 5, 3) and store.chunks == 3
    np.testing.assert_array_equal(np.asarray(store.lazy()), np.stack(frames))


def test_flow_cache_is_the_flow_computed_in_memory_and_resumes_after_a_crash(
    tiny_videos, tmp_path, monkeypatch
):
    cfg = tiny_config().flow
    frames = load_video(tiny_videos[0]).frames
    whole = compute_flow(frames, cfg)
    monkeypatch.setattr(motion, "FLOW_CHUNK_MB", 3 * 64 * 80 * 4 / 2**20)  # 3 pairs a chunk
    cached = load_or_compute_flow(frames, cfg, tmp_path)
    folder = next(tmp_path.glob("flow-*"))
    assert ChunkStore(folder / "forward").chunks == 3  # 7 pairs in chunks of 3
    for part in motion.FLOW_PARTS:
        np.testing.assert_array_equal(np.asarray(getattr(cached, part)), getattr(whole, part))
    # a crash after the first chunk: the rerun computes the missing chunks only
    for part in motion.FLOW_PARTS:
        for b in (1, 2):
            (folder / part / f"{b:06d}.npy").unlink()
    computed = []
    real = motion._pair_flows

    def counting(frames, first, last, *args):
        computed.append((first, last))
        return real(frames, first, last, *args)

    monkeypatch.setattr(motion, "_pair_flows", counting)
    again = load_or_compute_flow(frames, cfg, tmp_path)
    assert computed == [(3, 6), (6, 7)]
    np.testing.assert_array_equal(np.asarray(again.forward), whole.forward)
    computed.clear()
    load_or_compute_flow(frames, cfg, tmp_path)
    assert computed == []  # complete: read back, nothing computed


def test_a_long_video_is_read_when_used_and_bad_frames_are_named_first(tiny_videos, tmp_path):
    eager = load_video(tiny_videos[0])
    lazy = load_video(tiny_videos[0], in_memory_mb=0)
    assert isinstance(lazy.frames, LazyFrames) and isinstance(eager.frames, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy.frames), eager.frames)
    np.testing.assert_array_equal(lazy.labels, eager.labels)
    assert lazy.frame_names == eager.frame_names
    assert isinstance(load_video(tiny_videos[0], in_memory_mb=1).frames, np.ndarray)
    # a truncated frame is refused by name before any frame is used
    bad = tmp_path / "bad"
    shutil.copytree(tiny_videos[0], bad)
    last = sorted((bad / "frames").iterdir())[-1]
    last.write_bytes(last.read_bytes()[:-40])
    with pytest.raises(HvsaError, match=f"{last.name} is truncated"):
        load_video(bad, in_memory_mb=0)
    # a frame of another size too
    odd = sorted((bad / "frames").iterdir())[2]
    shutil.copy(sorted((tiny_videos[0] / "frames").iterdir())[-1], last)
    Image.new("RGB", (40, 30)).save(odd)
    with pytest.raises(HvsaError, match=f"frames differ in size: {odd.name} is 40x30"):
        load_video(bad, in_memory_mb=0)


def test_a_long_video_file_is_decoded_once_as_a_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("HVSA_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 64))
    rng = np.random.default_rng(1)
    for _ in range(9):
        writer.write(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    writer.release()
    eager = load_video(path)
    lazy = load_video(path, in_memory_mb=0)
    assert isinstance(lazy.frames, LazyFrames) and len(lazy) == len(eager) == 9
    np.testing.assert_array_equal(np.asarray(lazy.frames), eager.frames)
    (store,) = (tmp_path / "cache").glob("frames-*")
    assert json.loads((store / "meta.json").read_text())["shape"] == [9, 64, 80, 3]
    assert isinstance(load_video(path, in_memory_mb=0).frames, LazyFrames)  # read back


@pytest.mark.slow
def test_a_run_over_a_lazily_read_video_labels_as_one_in_memory(tiny_videos, pretrained, tmp_path):
    """Same labels, clicks and mIoU whether the frames sit in memory or are read when used
    (the fine-tuning tensors made a batch at a time, probabilities and belief kept on disk):
    two rounds of whole frames, with pseudo-labels, then a round of class layers (re-fused
    incrementally from the previous belief)."""
    outs = {}
    settings = ["layers.enabled=true", "layers.per_round=2", "fusion.calibration_probes=2",
                "finetune.steps=5", "model.train_crop=null", "loop.target_miou=0.999",
                "finetune.pseudo_threshold=0.9"]  # fmt: skip
    for name, limit in (("memory", "null"), ("lazy", "0")):
        out = tmp_path / name
        argv = run_args(tiny_videos[0], pretrained, out, "frame", 1, 3)
        sets = [*settings, f"data.in_memory_mb={limit}"]
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
        outs[name] = out
    # the lazy run's tensors went to its scratch folder, and went away with the run
    scratch = outs["lazy"] / "cache" / "scratch"
    assert scratch.is_dir() and not any(scratch.iterdir())
    assert not (outs["memory"] / "cache" / "scratch").exists()
    third = json.loads((outs["lazy"] / "round_03" / "metrics.json").read_text())
    assert "finetune" not in third["timings"]  # a layer round
    for r in (1, 2, 3):
        a, b = (
            json.loads((o / f"round_{r:02d}" / "metrics.json").read_text()) for o in outs.values()
        )
        assert (a["clicks_total"], a["miou"]) == (b["clicks_total"], b["miou"])
        for png in sorted((outs["memory"] / f"round_{r:02d}" / "labels").glob("*.png")):
            other = outs["lazy"] / f"round_{r:02d}" / "labels" / png.name
            np.testing.assert_array_equal(
                np.asarray(Image.open(png)), np.asarray(Image.open(other))
            )


@pytest.mark.slow
def test_a_round_that_left_the_network_rewrites_only_the_frames_its_labels_reach(
    tiny_videos, pretrained, tmp_path
):
    """Rounds 1-2 label whole frames (fine-tuning), round 3 draws class layers, which leave
    the network as it was: with the carry window at one frame, round 3 encodes the frames its
    layers lie on and links every other file to round 2's."""
    out = tmp_path / "run"
    argv = run_args(tiny_videos[0], pretrained, out, "frame", 1, 3)
    settings = ["layers.enabled=true", "layers.per_round=2", "fusion.calibration_probes=2",
                "fusion.window=1", "finetune.steps=5", "model.train_crop=null",
                "loop.target_miou=0.999"]  # fmt: skip
    assert main([*argv, *(a for s in settings for a in ("--set", s))]) == 0
    third = json.loads((out / "round_03" / "metrics.json").read_text())
    assert "finetune" not in third["timings"]  # a layer round
    layered = set(pd.read_parquet(out / "round_03" / "selected.parquet")["frame"])
    assert layered
    names = sorted(p.stem for p in (out / "round_02" / "labels").glob("*.png"))
    for i, name in enumerate(names):
        for sub, ext in (("labels", "png"), ("overlays", "jpg")):
            linked = (out / "round_03" / sub / f"{name}.{ext}").samefile(
                out / "round_02" / sub / f"{name}.{ext}"
            )
            assert linked == (i not in layered), (name, sub)


def test_disk_tensor_reads_and_writes_like_a_tensor_and_owns_its_folder(tmp_path):
    import gc

    import torch

    from hvsa.data import spill
    from hvsa.data.spill import DiskTensor, clear_stale, like

    data = torch.rand(11, 3, 4, 5).half()
    frame_bytes = 3 * 4 * 5 * 2
    old = spill.CHUNK_MB, spill.CACHE_MB
    spill.CHUNK_MB, spill.CACHE_MB = 2 * frame_bytes / 2**20, 2 * frame_bytes / 2**20
    try:
        t = DiskTensor(tmp_path / "s", data.shape, torch.float16)
        assert t.store.chunk == 2 and len(t) == 11 and t.shape == data.shape
        assert not t[4].any()  # frames never written read as zeros
        t[0:5] = data[0:5]
        for i in range(5, 11):  # one frame at a time, chunks evicted as others fill
            t[i] = data[i]
        assert t[3].dtype == torch.float16
        torch.testing.assert_close(t[:], data)
        torch.testing.assert_close(t[2:9], data[2:9])
        torch.testing.assert_close(t[[9, 0, 3, 4]], data[[9, 0, 3, 4]])
        torch.testing.assert_close(t[torch.tensor([1, 2])], data[1:3])
        torch.testing.assert_close(t[-1], data[-1])
        torch.testing.assert_close(t[2:5, 1], data[2:5, 1])
        np.testing.assert_array_equal(np.asarray(t), data.numpy())
        # a clone shares the written chunks until either writes
        c = t.clone()
        c[0] = torch.zeros(3, 4, 5)
        c.flush()
        torch.testing.assert_close(t[0], data[0])
        assert not c[0].any()
        torch.testing.assert_close(c[1:], data[1:])
        assert isinstance(like(t, (2, 3), torch.float16), DiskTensor)
        assert isinstance(like(data, (2, 3), torch.float16), torch.Tensor)
        # its folder goes with it
        folder = t.folder
        del t
        gc.collect()
        assert not folder.exists() and c.folder.exists()
        # folders of processes that no longer run are cleared, live ones kept
        dead = tmp_path / "s" / "t-999999999-x"
        dead.mkdir()
        clear_stale(tmp_path / "s")
        assert not dead.exists() and c.folder.exists()
    finally:
        spill.CHUNK_MB, spill.CACHE_MB = old


def test_per_pixel_maps_of_probabilities_on_disk_equal_those_in_memory(tmp_path):
    import torch

    from hvsa.data.spill import DiskTensor
    from hvsa.method.gain import pixel_gain
    from hvsa.method.uncertainty import pixel_uncertainty

    probs = torch.rand(37, 4, 6, 5).softmax(1).half()
    disk = DiskTensor(tmp_path / "s", probs.shape, torch.float16)
    disk[:] = probs
    for fn in (lambda p: pixel_uncertainty(p, "entropy"), pixel_gain):
        in_memory, on_disk = fn(probs), fn(disk.flush())
        assert isinstance(in_memory, np.ndarray) and not isinstance(on_disk, np.ndarray)
        np.testing.assert_array_equal(np.asarray(on_disk), in_memory)
        np.testing.assert_array_equal(on_disk[30], in_memory[30])
