"""A workspace whose DVC remote is S3: `campaign.remote: s3://bucket/prefix` with
`campaign.remote_endpoint` for an S3-compatible server, here moto's server mode on 127.0.0.1
(the tests' local S3). ``dvc push`` sends every versioned input and output there, and ``dvc
pull`` brings them back into an empty cache."""

import shutil

import pytest

from hvsa.campaign.lifecycle import init_workspace
from hvsa.campaign.versioning import dvc
from hvsa.cli import main
from tests.conftest import write_fast_params

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def local_s3(monkeypatch):
    """A bucket ``hvsa`` on a moto server on 127.0.0.1 (credentials its own; nothing leaves)."""
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="hvsa")
    yield url, client
    server.stop()


@pytest.mark.slow  # a campaign round (~30 s)
def test_push_and_pull_through_an_s3_remote(local_s3, tiny_videos, pretrained, tmp_path):
    """A round, pushed; then, as on a new machine (no cache, no tracked files), pulled back."""
    url, client = local_s3
    params = write_fast_params(tmp_path / "params.yaml")
    overrides = {"campaign.remote": "s3://hvsa/campaigns/ws", "campaign.remote_endpoint": url}
    ws = init_workspace(tmp_path / "ws", "s3", pretrained, {"cam": str(tiny_videos[0])}, params,
                        overrides)  # fmt: skip
    assert "s3://hvsa/campaigns/ws" in dvc(ws.root, "remote", "list")
    assert main(["campaign", "round", str(ws.root)]) == 0
    dvc(ws.root, "push")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="hvsa").get("Contents", [])]
    assert keys and all(k.startswith("campaigns/ws/files/md5/") for k in keys)
    tracked = [ws.root / "data" / "pretrained.pt", ws.root / "data" / "cam" / "r1" / "model.pt",
               ws.root / "data" / "cam" / "r1" / "human.npz"]  # fmt: skip
    original = [p.read_bytes() for p in tracked]
    shutil.rmtree(ws.root / ".dvc" / "cache")
    for path in tracked:
        path.unlink()
    dvc(ws.root, "pull")
    assert [p.read_bytes() for p in tracked] == original


@pytest.mark.parametrize(
    "setting, expected",
    [
        (["campaign.remote=gs://bucket/x"], "a folder or s3://bucket/prefix"),
        (["campaign.remote=s3:///x"], "s3:// needs a bucket"),
        (["campaign.remote_endpoint=http://127.0.0.1:9000"], "is for an s3:// campaign.remote"),
    ],
)
def test_a_remote_the_workspace_could_not_push_to_is_refused(
    setting, expected, tiny_videos, pretrained, tmp_path, capsys
):
    argv = ["campaign", "init", str(tmp_path / "ws"), "--model", str(pretrained),
            "--video", f"cam={tiny_videos[0]}"]  # fmt: skip
    for s in setting:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "ws").exists()
