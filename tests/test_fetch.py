"""`harness datasets fetch` against a loopback HTTP server serving archives made here."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from test_image_sources import write_cifar10, write_mnist

from harness.cli import main
from harness_plugins.data import images
from harness_plugins.data.fetch import Resource


class _Quiet(SimpleHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):  # no request lines in the test output
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A server on 127.0.0.1 serving ``tmp_path/served``; stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    _Quiet.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(served)))
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_archive(served, tmp_path):
    """``cifar-10-python.tar.gz`` with the official layout; its MD5."""
    write_cifar10(tmp_path / "build" / "cifar-10-batches-py", n_per_batch=2)
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return _md5(archive)


def _use(monkeypatch, factory, mirror, md5s):
    """Serve from ``mirror`` with this test's checksums (file names stay the published ones)."""
    monkeypatch.setenv("HARNESS_DATA_MIRROR", mirror)
    res = [Resource(r.url, md5s[r.filename], r.folder, r.unpack)
           for r in factory.fetch.resources]
    monkeypatch.setattr(factory.fetch, "resources", res)


def test_fetch_downloads_verifies_unpacks_and_is_idempotent(server, tmp_path, monkeypatch,
                                                             capsys):
    served, url = server
    _use(monkeypatch, images.cifar10, url,
         {"cifar-10-python.tar.gz": _cifar_archive(served, tmp_path)})
    root = tmp_path / "data"
    assert main(["datasets", "fetch", "cifar10", "--root", str(root)]) == 0
    assert "fetched into" in capsys.readouterr().out
    assert _Quiet.hits == ["/cifar-10-python.tar.gz"]
    raw = images.cifar10(root=root)
    assert raw.X.shape == (12, 3, 32, 32)
    assert main(["datasets", "fetch", "cifar10", "--root", str(root)]) == 0
    assert "already in place" in capsys.readouterr().out
    assert len(_Quiet.hits) == 1  # nothing downloaded the second time


def test_fetch_idx_files_into_the_torchvision_folder(server, tmp_path, monkeypatch):
    served, url = server
    written = write_mnist(served, gz=True)
    md5s = {p.name: _md5(p) for p in served.iterdir()}
    _use(monkeypatch, images.mnist, url, md5s)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "home"))
    assert main(["datasets", "fetch", "mnist"]) == 0  # no --root: the data directory
    assert (tmp_path / "home" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    raw = images.mnist()
    assert np.array_equal(raw.X[:5, 0], written["train"][0])


def test_bad_checksum_removes_the_download(server, tmp_path, monkeypatch, capsys):
    served, url = server
    _cifar_archive(served, tmp_path)
    _use(monkeypatch, images.cifar10, url, {"cifar-10-python.tar.gz": "0" * 32})
    root = tmp_path / "data"
    assert main(["datasets", "fetch", "cifar10", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "0" * 32 in err and "removed" in err
    assert len(err.strip().splitlines()) == 1
    assert not any(root.rglob("*"))  # no archive, no .part, nothing unpacked


def test_offline_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HARNESS_DATA_MIRROR", f"http://127.0.0.1:{port}")
    root = tmp_path / "data"
    assert main(["datasets", "fetch", "svhn", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"http://127.0.0.1:{port}/train_32x32.mat" in err
    assert f"place it at {root / 'svhn' / 'train_32x32.mat'}" in err


def test_an_archive_placed_by_hand_is_verified_and_unpacked(server, tmp_path, monkeypatch):
    served, url = server
    md5 = _cifar_archive(served, tmp_path)
    _use(monkeypatch, images.cifar10, url, {"cifar-10-python.tar.gz": md5})
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes((served / "cifar-10-python.tar.gz").read_bytes())
    assert main(["datasets", "fetch", "cifar10", "--root", str(root)]) == 0
    assert _Quiet.hits == []
    assert images.CIFAR10.find(root) == root / "cifar-10-batches-py"


def test_an_archive_escaping_its_folder_is_refused(server, tmp_path, monkeypatch, capsys):
    served, url = server
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    _use(monkeypatch, images.cifar10, url, {"cifar-10-python.tar.gz": _md5(archive)})
    assert main(["datasets", "fetch", "cifar10", "--root", str(tmp_path / "data")]) == 2
    assert "outside" in capsys.readouterr().err
    assert not (tmp_path / "evil.txt").exists()


def test_a_source_without_fetch_and_a_missing_name(capsys):
    assert main(["datasets", "fetch", "sklearn"]) == 2
    assert "nothing to fetch" in capsys.readouterr().err
    assert main(["datasets", "fetch"]) == 2
    assert "needs a dataset source name" in capsys.readouterr().err
