"""Hostile but fair sources (issue 20): archive bombs, an HTML page served for an archive URL, a
single class, a malformed checksum, symbolic links that leave the source. Each fails early with a
message that names the entry/file/parameter and the fix, and loses nothing of an earlier good run."""

from __future__ import annotations

import http.server
import io
import logging
import os
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from transfer_lab.data import layouts, sources
from transfer_lab.params.data import DataParams
from transfer_lab.pipelines.data_ingestion import nodes

MB = 1 << 20


def _good_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/a.txt", b"a" * 100)
        zf.writestr("dogs/b.txt", b"b" * 100)
    return path


def _zip_of_zeros(path: Path, name: str, n_bytes: int) -> Path:
    zeros = bytes(MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as out:
            for _ in range(n_bytes // MB):
                out.write(zeros)
    return path


def test_zip_bomb_is_refused_before_extracting(tmp_path):
    cache = tmp_path / "cache"
    good, _ = sources.materialize(str(_good_zip(tmp_path / "good.zip")), cache)
    bomb = _zip_of_zeros(tmp_path / "bomb.zip", "cats/zeros.bin", 200 * MB)
    assert bomb.stat().st_size < 2 * MB
    with pytest.raises(sources.SourceError) as err:
        sources.materialize(str(bomb), cache)
    msg = str(err.value)
    assert "'cats/zeros.bin'" in msg and f"{200 * MB:,}" in msg and "archive bomb" in msg
    assert "data.source" in msg
    extracted = cache / "extracted"
    assert sorted(p.name for p in extracted.iterdir() if p.is_dir()) == [good.name]  # nothing of the bomb
    assert (good / "cats" / "a.txt").read_bytes() == b"a" * 100  # the earlier run is intact


def test_tar_bomb_is_refused_before_extracting(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    size = 64 * MB
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("dogs/zeros.bin")
        info.size = size

        class Zeros(io.RawIOBase):
            left = size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tf.addfile(info, io.BufferedReader(Zeros()))
    with pytest.raises(sources.SourceError, match=r"'dogs/zeros.bin' inflates from .* to 67,108,864 bytes"):
        sources.materialize(str(archive), tmp_path / "cache")
    assert not any(p.is_dir() for p in (tmp_path / "cache" / "extracted").iterdir())


def test_declared_total_above_max_extract_bytes_is_refused(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"cls{i}/f.bin", os.urandom(100_000))
    with pytest.raises(sources.SourceError) as err:
        sources.materialize(str(archive), tmp_path / "cache", max_extract_bytes=200_000)
    msg = str(err.value)
    assert "300,000 bytes" in msg and "data.max_extract_bytes=200000" in msg and "'cls0/f.bin'" in msg
    assert 'data.max_extract_bytes=300000' in msg  # the fix, with the value that would do
    # the same archive under a limit that fits extracts
    folder, _ = sources.materialize(str(archive), tmp_path / "cache", max_extract_bytes=300_000)
    assert len(list(folder.rglob("*.bin"))) == 3


def test_default_limit_is_ten_times_the_archive_or_1_gib(tmp_path):
    small = tmp_path / "s.zip"
    small.write_bytes(b"x" * 1000)
    assert sources.extract_limit(small, None) == 1 << 30
    assert sources.extract_limit(small, 5) == 5
    big = tmp_path / "b.zip"
    with open(big, "wb") as f:
        f.truncate(200 * MB)  # sparse: no disk used
    assert sources.extract_limit(big, None) == 2000 * MB


def test_entry_that_lies_about_its_size_stops_the_extraction(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cls/a.bin", b"a" * 500_000)
        zf.writestr("other/b.bin", b"b")
    raw = bytearray(archive.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size: 500,000 -> 1,000
        at = raw.index(sig)
        assert struct.unpack_from("<I", raw, at + offset)[0] == 500_000
        struct.pack_into("<I", raw, at + offset, 1000)
    archive.write_bytes(bytes(raw))
    with pytest.raises(sources.SourceError, match=r"entry 'cls/a.bin' cannot be extracted .*declares 1,000 bytes"):
        sources.materialize(str(archive), tmp_path / "cache")
    assert not any(p.is_dir() for p in (tmp_path / "cache" / "extracted").iterdir())


def test_copy_stops_when_an_entry_yields_more_than_declared(tmp_path):
    with pytest.raises(sources.SourceError, match=r"entry 'x.bin' yields more than the 1,000 bytes it declares"):
        sources._copy_entry(io.BytesIO(b"z" * (3 * MB)), tmp_path / "x.bin", tmp_path / "a.zip", "x.bin", 1000,
                            [0], 10 * MB, None)


def test_max_extract_bytes_parameter():
    assert DataParams().max_extract_bytes is None
    assert DataParams(max_extract_bytes="5000").max_extract_bytes == 5000  # as --params gives it
    with pytest.raises(ValidationError, match="data.max_extract_bytes=0"):
        DataParams(max_extract_bytes=0)


# --- an HTML page served for an archive URL -------------------------------------------------------

HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"


def _tar_gz_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("pets/cats/a.txt", "pets/dogs/b.txt"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"data"))
    return buf.getvalue()


@pytest.fixture
def html_server():
    state = {"body": HTML, "type": "text/html; charset=utf-8", "requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["requests"] += 1
            self.send_response(200)  # ignores Range, as a login page would
            self.send_header("Content-Type", state["type"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopper = threading.Timer(60, httpd.shutdown)  # bounded: stops by itself
    stopper.daemon = True
    stopper.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/files/pets.tar.gz"
    finally:
        stopper.cancel()
        httpd.shutdown()
        httpd.server_close()


def test_html_page_for_an_archive_url_is_not_kept(html_server, tmp_path, caplog):
    state, url = html_server
    cache = tmp_path / "cache"
    downloads = cache / "downloads"
    for attempt in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="transfer_lab.data.sources"):
            with pytest.raises(sources.SourceError) as err:
                sources.materialize(url, cache)
        msg = str(err.value)
        assert "an HTML page" in msg and "a login or error page?" in msg and "pets.tar.gz" in msg, attempt
        assert "not a readable archive" not in msg
        assert "Using the already downloaded" not in caplog.text
        assert list(downloads.iterdir()) == []  # neither pets.tar.gz nor a .part
    assert state["requests"] == 2
    state["body"], state["type"] = _tar_gz_bytes(), "application/gzip"
    folder, refused = sources.materialize(url, cache)
    assert (folder / "pets" / "cats" / "a.txt").read_bytes() == b"data" and refused.empty
    assert (downloads / "pets.tar.gz").exists()


def test_html_kept_by_an_older_run_is_downloaded_again(html_server, tmp_path, caplog):
    state, url = html_server
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "pets.tar.gz").write_bytes(HTML)  # what an older version left as "finished"
    state["body"], state["type"] = _tar_gz_bytes(), "application/gzip"
    with caplog.at_level(logging.INFO, logger="transfer_lab.data.sources"):
        folder, _ = sources.materialize(url, tmp_path / "cache")
    assert "Using the already downloaded" not in caplog.text and "downloading it again" in caplog.text
    assert (folder / "pets" / "dogs" / "b.txt").exists() and state["requests"] == 1


def test_checksum_mismatch_says_what_the_server_sent(html_server, tmp_path):
    _, url = html_server
    with pytest.raises(sources.SourceError, match=r"Checksum mismatch.*an HTML page"):
        sources.materialize(url, tmp_path / "cache", checksum="sha256:" + "0" * 64)
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


# --- a malformed data.checksum ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["sha256:zz-not-hex", "md5:1234", "crc32:abcd", "sha256:" + "g" * 64])
def test_malformed_checksum_fails_before_any_download(html_server, tmp_path, bad):
    state, url = html_server
    with pytest.raises(sources.SourceError, match="data.checksum") as err:
        sources.materialize(url, tmp_path / "cache", checksum=bad)
    assert state["requests"] == 0 and not (tmp_path / "cache" / "downloads").exists()
    if bad == "sha256:zz-not-hex":
        assert "64 hex digits" in str(err.value)
    with pytest.raises(ValidationError, match="data.checksum"):  # and before any node runs
        DataParams(checksum=bad)


def test_well_formed_checksums_pass():
    assert DataParams(checksum="MD5:" + "A" * 32).checksum == "MD5:" + "A" * 32
    assert sources.parse_checksum("sha256:" + "ab" * 32) == ("sha256", "ab" * 32)
    assert sources.parse_checksum(" " + "c" * 32) == ("md5", "c" * 32)


# --- a single class ----------------------------------------------------------------------------------

def _png(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)
    return path


def test_single_class_folder_says_two_classes_are_needed(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        _png(src / "cats" / f"{i}.png", (10 * i, 0, 0))
    with pytest.raises(layouts.LayoutError, match=r"one class sub-folder only, 'cats' \(3 files\): at least two"):
        layouts.scan(src, "folders")
    for layout in ("auto", "folders"):
        with pytest.raises(layouts.LayoutError, match=r"'cats'.*at least two classes are needed"):
            nodes.check_images(str(src), sources._empty(), DataParams(source=str(src), layout=layout))


def test_single_class_beside_loose_files(tmp_path):
    src = tmp_path / "src"
    _png(src / "cats" / "0.png")
    _png(src / "stray.png")
    with pytest.raises(layouts.LayoutError, match=r"'cats'.*at least two classes are needed"):
        nodes.check_images(str(src), sources._empty(), DataParams(source=str(src), layout="folders"))
    # two classes still read as before
    _png(src / "dogs" / "0.png", (0, 0, 200))
    files, _, layout = layouts.scan(src, "auto")
    assert layout == "folders" and sorted(set(files.label)) == ["cats", "dogs"]


# --- symbolic links that leave the source -------------------------------------------------------------

def test_links_out_of_the_source_are_followed_and_listed(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    _png(src / "cats" / "own.png", (1, 2, 3))
    _png(src / "cats" / "inner_target.png", (4, 5, 6))
    outside_file = _png(elsewhere / "lone.png", (7, 8, 9))
    _png(elsewhere / "dogs" / "d1.png", (0, 0, 250))
    _png(elsewhere / "dogs" / "d2.png", (0, 250, 0))
    os.symlink(outside_file, src / "cats" / "linked.png")
    os.symlink(src / "cats" / "inner_target.png", src / "cats" / "inner_link.png")  # stays inside
    os.symlink(elsewhere / "dogs", src / "dogs")  # a whole class from elsewhere
    images, rejected = nodes.check_images(str(src), sources._empty(), DataParams(source=str(src)))
    assert rejected.empty
    by_path = dict(zip(images.path, images.resolved_path))
    assert by_path[str(src / "cats" / "linked.png")] == str(outside_file.resolve())
    assert by_path[str(src / "dogs" / "d1.png")] == str((elsewhere / "dogs" / "d1.png").resolve())
    assert by_path[str(src / "cats" / "own.png")] == ""
    assert by_path[str(src / "cats" / "inner_link.png")] == ""
    manifest, _, _, _ = nodes.split_images(images, rejected, DataParams(source=str(src), split={"train": 0.5,
                                                                                         "val": 0.5, "test": 0}))
    assert "resolved_path" in manifest.columns
    assert sorted(p for p in manifest.resolved_path if p) == sorted(
        str(p.resolve()) for p in (outside_file, elsewhere / "dogs" / "d1.png", elsewhere / "dogs" / "d2.png"))
