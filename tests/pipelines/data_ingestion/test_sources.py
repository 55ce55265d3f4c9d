"""Downloader against a local HTTP server on 127.0.0.1, and safe archive extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from transfer_lab.data import sources

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_first_at: int | None = None  # drop the connection after this many bytes, once
    honour_range = True
    requests: list[str | None] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        cls = type(self)
        rng = self.headers.get("Range")
        cls.requests.append(rng)
        start = 0
        if rng and cls.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.cut_first_at is not None:
            cut, cls.cut_first_at = cls.cut_first_at, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"requests": [], "cut_first_at": None, "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/files/data.bin"
    httpd.shutdown()


SHA = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_checksum(server, tmp_path):
    _, url = server
    out = sources.download(url, tmp_path, checksum=SHA, progress=False)
    assert out == tmp_path / "data.bin" and out.read_bytes() == PAYLOAD
    # A second call reuses the verified file without a request.
    handler, _ = server
    n = len(handler.requests)
    assert sources.download(url, tmp_path, checksum=SHA, progress=False) == out
    assert len(handler.requests) == n


def test_wrong_checksum_leaves_no_file(server, tmp_path):
    _, url = server
    with pytest.raises(sources.SourceError, match="Checksum mismatch"):
        sources.download(url, tmp_path, checksum="sha256:" + "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes(server, tmp_path):
    handler, url = server
    handler.cut_first_at = 300_000
    with pytest.raises(sources.SourceError, match="Run again to resume"):
        sources.download(url, tmp_path, checksum=SHA, progress=False)
    assert not (tmp_path / "data.bin").exists()  # nothing that looks complete
    part = tmp_path / "data.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    out = sources.download(url, tmp_path, checksum=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert handler.requests[-1] == f"bytes={300_000}-" or handler.requests[-1].startswith("bytes=")
    assert not part.exists()


def test_server_without_range_support_restarts(server, tmp_path):
    handler, url = server
    handler.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"garbage that is not the start")
    out = sources.download(url, tmp_path, checksum=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD


def test_unreachable_url_says_what_to_do(tmp_path):
    with pytest.raises(sources.SourceError, match="data.source=/path/to/x.tar.gz"):
        sources.download("http://127.0.0.1:9/x.tar.gz", tmp_path, timeout=2, progress=False)


def _tar_with(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def test_tar_traversal_is_refused(tmp_path):
    archive = _tar_with(
        tmp_path / "evil.tar.gz",
        {"pets/ok.txt": b"fine", "../escape.txt": b"x", "/abs.txt": b"x", "pets/../../up.txt": b"x"},
        links={"pets/link": "/etc/passwd"},
    )
    folder, refused = sources.materialize(str(archive), tmp_path / "cache")
    assert (folder / "pets" / "ok.txt").read_bytes() == b"fine"
    assert sorted(refused.detail) == sorted(
        ["path escapes the target folder (..)", "absolute path", "path escapes the target folder (..)", "link"]
    )
    assert set(refused.reason) == {sources.UNSAFE_ENTRY}
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "escape.txt").exists()
    assert not (folder / "pets" / "link").exists()
    # Extraction is cached: a second call returns the same folder and the same refusals.
    again, refused2 = sources.materialize(str(archive), tmp_path / "cache")
    assert again == folder and len(refused2) == 4


def test_zip_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cls/a.txt", b"a")
        zf.writestr("../../b.txt", b"b")
    folder, refused = sources.materialize(str(archive), tmp_path / "cache")
    assert (folder / "cls" / "a.txt").exists()
    assert list(refused.detail) == ["path escapes the target folder (..)"]
    assert not (tmp_path / "b.txt").exists()


def test_missing_and_non_archive_sources(tmp_path):
    with pytest.raises(sources.SourceError, match="data.source not found"):
        sources.materialize(str(tmp_path / "nope"), tmp_path / "cache")
    f = tmp_path / "photo.jpg"
    f.write_bytes(b"x")
    with pytest.raises(sources.SourceError, match="not an archive"):
        sources.materialize(str(f), tmp_path / "cache")
