"""Turn ``data.source`` (a folder, a local archive or an http(s) URL) into a local folder.

Downloads are streamed with a progress bar into ``<name>.part``, resumed from where they stopped
(HTTP Range), verified against a checksum and only then renamed to their final name, so a failed or
interrupted download never leaves a file that looks complete. Archives are extracted into a
temporary folder that is renamed when complete; entries that would land outside it (absolute
paths, ``..``, links, devices) are refused and reported.

Hostile sources are refused before they cost anything:

- ``data.checksum`` is checked for its form (algorithm and hex length) before any download.
- A download is renamed into place only once it is known to be what was asked for: its checksum
  matches, or (no checksum) it opens as the archive its name says. Otherwise it is deleted and the
  message says what the server sent (an HTML page, JSON, text...).
- Archive bombs: an archive whose declared sizes add up to more than ``data.max_extract_bytes``
  (null: max(10 x the archive's size, 1 GiB), see :func:`extract_limit`), or with an entry that
  inflates more than :data:`MAX_RATIO` times, is refused before extracting; extraction also stops
  when the bytes written exceed what the archive declared.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pandas as pd

from transfer_lab.io.files import atomic_dir, atomic_path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
UNSAFE_ENTRY = "unsafe_archive_entry"
_CHUNK = 1 << 20
_GiB = 1 << 30
#: with ``data.max_extract_bytes: null``: at most this many times the archive's size, and at least
#: ``AUTO_EXTRACT_FLOOR`` bytes (photos hardly compress: a photo archive extracts to about its size)
AUTO_EXTRACT_FACTOR = 10
AUTO_EXTRACT_FLOOR = 1 * _GiB
#: an entry that inflates more than this many times (and to more than RATIO_MIN_BYTES) is refused
MAX_RATIO = 200
RATIO_MIN_BYTES = 1 << 20
_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

# Published checksums of the data sets the project knows by URL.
KNOWN_CHECKSUMS = {
    "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz": "md5:5c4f3ee8e5d25df40f4fd59a7f44e54c",
}


class SourceError(ValueError):
    """``data.source`` cannot be used; the message says what to change."""


def is_url(source: str) -> bool:
    return urlparse(str(source)).scheme in ("http", "https")


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    if not checksum:
        return None
    text = str(checksum).strip()
    algo, _, digest = text.partition(":")
    if not digest:
        algo, digest = ("md5" if len(text) == 32 else "sha256"), text
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in _HEX_LENGTHS:
        raise SourceError(f"data.checksum '{checksum}': unknown algorithm '{algo}'. Use 'sha256:<hex>' or "
                          "'md5:<hex>', e.g. --params \"data.checksum=sha256:<64 hex digits>\".")
    if len(digest) != _HEX_LENGTHS[algo] or any(c not in "0123456789abcdef" for c in digest):
        raise SourceError(
            f"data.checksum '{checksum}' is not a {algo} checksum: it needs {_HEX_LENGTHS[algo]} hex digits "
            f"(0-9, a-f) after '{algo}:', got {len(digest)} character(s) '{digest[:20]}'. Copy it again from where "
            "the data set is published, or set data.checksum=null to skip the check.")
    return algo, digest


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` of ``data.checksum``, or None; :class:`SourceError` when malformed."""
    return _parse_checksum(checksum)


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest_dir: str | Path, *, checksum: str | None = None, timeout: float = 60.0,
             progress: bool = True) -> Path:
    """Download ``url`` into ``dest_dir`` (resuming a ``.part`` file), verify, and return the file."""
    from tqdm.auto import tqdm

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urlparse(url).path).name or "download"
    final = dest_dir / name
    part = dest_dir / (name + ".part")
    expected = _parse_checksum(checksum)

    if final.exists():
        if expected is not None:
            good = _file_digest(final, expected[0]) == expected[1]
            why = "does not match data.checksum"
        else:
            why = _not_what_was_asked(final, name)
            good = why is None
        if good:
            log.info("Using the already downloaded %s", final)
            return final
        log.warning("%s %s; downloading it again.", final, why)
        final.unlink()

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "transfer-lab"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already whole
            response = None
        else:
            raise SourceError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}. Check data.source.") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(
            f"Cannot reach {url}: {getattr(exc, 'reason', exc)}. If this machine is offline, download the file "
            f"elsewhere and pass --params data.source=/path/to/{name} (or the extracted folder)."
        ) from exc

    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if offset and status != 206:
                log.info("The server does not resume downloads; starting %s again.", name)
                offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) + offset if length is not None else None
            mode = "ab" if offset else "wb"
            try:
                with open(part, mode) as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=f"Downloading {name}", disable=not progress,
                ) as bar:
                    while True:
                        block = response.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise SourceError(
                    f"Download of {url} was interrupted ({exc}); {part.stat().st_size:,} bytes are kept in {part}. "
                    "Run again to resume."
                ) from exc
            if total is not None and part.stat().st_size < total:
                raise SourceError(
                    f"Download of {url} stopped at {part.stat().st_size:,} of {total:,} bytes; kept in {part}. "
                    "Run again to resume."
                )

    if expected is not None:
        got = _file_digest(part, expected[0])
        if got != expected[1]:
            sent = _describe(part)
            part.unlink()
            raise SourceError(
                f"Checksum mismatch for {url}: expected {expected[0]} {expected[1]}, got {got}; the server sent "
                f"{sent}. The download was deleted. Check data.checksum, or the URL if it points to another file."
            )
    else:
        why = _not_what_was_asked(part, name)
        if why is not None:
            part.unlink()
            raise SourceError(
                f"Download of {url} {why}. It was deleted, so the next run downloads it again. Check data.source "
                "(open the URL in a browser: a page that asks to log in or accept terms needs the file downloaded "
                "by hand, then --params data.source=/path/to/" + name + ")."
            )
    os.replace(part, final)
    return final


def _describe(path: Path) -> str:
    """What the bytes of ``path`` look like, in words (for messages about a wrong download)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(2048)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:512]:
        return f"an HTML page ({size:,} bytes: a login or error page?)"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return f"an XML/HTML document ({size:,} bytes): an error page?"
    if text.startswith((b"{", b"[")):
        return f"JSON ({size:,} bytes): an API error? It starts {head[:80]!r}"
    if size == 0:
        return "an empty file"
    try:
        head.decode("utf-8")
        return f"text ({size:,} bytes) starting {head[:80]!r}"
    except UnicodeDecodeError:
        return f"{size:,} bytes of binary data starting {head[:8].hex()}"


def _opens(path: Path, name: str) -> bool:
    """Whether ``path`` opens as the archive ``name`` says it is (reads the index or first header)."""
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
            return True
        with tarfile.open(path) as tf:
            tf.next()
        return True
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError):
        return False


def _not_what_was_asked(path: Path, name: str) -> str | None:
    """None when the download ``path`` (of the file ``name``) is usable; else what is wrong, in words."""
    if is_archive(name):
        if _opens(path, name):
            return None
        return f"is not the archive its name says ({name}): the server sent {_describe(path)}"
    sent = _describe(path)
    if sent.startswith("an HTML page"):
        return f"is {sent}"
    return None


def _safe_member(name: str) -> str | None:
    """Why an archive entry name is unsafe, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "path escapes the target folder (..)"
    return None


def extract_limit(archive: Path, max_extract_bytes: int | None) -> int:
    """The most bytes ``archive`` may extract to: ``data.max_extract_bytes``, or when it is null
    max(AUTO_EXTRACT_FACTOR x the archive's size, AUTO_EXTRACT_FLOOR)."""
    if max_extract_bytes is not None:
        return int(max_extract_bytes)
    return max(AUTO_EXTRACT_FACTOR * archive.stat().st_size, AUTO_EXTRACT_FLOOR)


def _limit_words(max_extract_bytes: int | None) -> str:
    if max_extract_bytes is None:
        return (f"data.max_extract_bytes=null: max({AUTO_EXTRACT_FACTOR} x the archive's size, "
                f"{AUTO_EXTRACT_FLOOR // _GiB} GiB)")
    return f"data.max_extract_bytes={int(max_extract_bytes)}"


def _check_sizes(archive: Path, entries: list[tuple[str, int, int]], max_extract_bytes: int | None) -> None:
    """Refuse ``archive`` before extracting when its entries ``(name, declared size, compressed size)``
    add up to more than the limit, or one inflates absurdly (an archive bomb)."""
    limit = extract_limit(archive, max_extract_bytes)
    for name, size, packed in entries:
        if size > RATIO_MIN_BYTES and size > MAX_RATIO * max(packed, 1):
            raise SourceError(
                f"{archive}: entry '{name}' inflates from {packed:,} to {size:,} bytes ({size / max(packed, 1):,.0f} "
                f"times; photos hardly compress, the limit is {MAX_RATIO}): an archive bomb? Nothing was "
                "extracted. If the archive is genuine, extract it yourself and pass the folder as data.source."
            )
    total = sum(size for _, size, _ in entries)
    if total > limit:
        biggest = max(entries, key=lambda e: e[1])
        raise SourceError(
            f"{archive} ({archive.stat().st_size:,} bytes) declares {total:,} bytes of content, more than the "
            f"limit of {limit:,} ({_limit_words(max_extract_bytes)}); its largest entry is '{biggest[0]}' "
            f"({biggest[1]:,} bytes, {biggest[2]:,} compressed). Nothing was extracted. If the archive is genuine "
            f"and the disk has room, raise the limit, e.g. --params \"data.max_extract_bytes={total}\"."
        )


def _copy_entry(src, target: Path, archive: Path, name: str, declared: int, written: list[int], limit: int,
                max_extract_bytes: int | None) -> None:
    """Copy one entry, stopping when it yields more than it declared or the total passes ``limit``."""
    n = 0
    with open(target, "wb") as out:
        while True:
            block = src.read(_CHUNK)
            if not block:
                break
            n += len(block)
            written[0] += len(block)
            if n > declared:
                raise SourceError(
                    f"{archive}: entry '{name}' yields more than the {declared:,} bytes it declares (stopped at "
                    f"{n:,}): a corrupt or crafted archive. Nothing was kept; check data.source."
                )
            if written[0] > limit:
                raise SourceError(
                    f"{archive}: extraction passed the limit of {limit:,} bytes ({_limit_words(max_extract_bytes)}) "
                    f"at entry '{name}'. Nothing was kept. Raise data.max_extract_bytes if the archive is genuine."
                )
            out.write(block)


def extract(archive: str | Path, dest: str | Path, *, max_extract_bytes: int | None = None) -> tuple[Path, pd.DataFrame]:
    """Extract ``archive`` into ``dest`` (atomically). Returns the folder and the refused entries.

    ``max_extract_bytes`` (``data.max_extract_bytes``): the most bytes the archive may extract to;
    None: max(AUTO_EXTRACT_FACTOR x its size, AUTO_EXTRACT_FLOOR). Bombs are refused before anything
    is written (see :func:`_check_sizes`); a failed extraction leaves no ``dest``."""
    archive, dest = Path(archive), Path(dest)
    refused: list[tuple[str, str, str]] = []
    refused_csv = dest.with_name(dest.name + ".refused.csv")
    if dest.is_dir():  # only a finished extraction is ever renamed to ``dest``
        table = pd.read_csv(refused_csv) if refused_csv.exists() else _empty()
        return dest, table
    limit = extract_limit(archive, max_extract_bytes)
    written = [0]
    with atomic_dir(dest) as tmp:
        if archive.name.lower().endswith(".zip"):
            try:
                zf = zipfile.ZipFile(archive)
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceError(f"{archive} is not a readable zip archive ({exc}): {_describe(archive)}. "
                                  "Check data.source.") from exc
            with zf:
                keep = []
                for info in zf.infolist():
                    reason = _safe_member(info.filename)
                    mode = (info.external_attr >> 16) & 0o170000
                    if reason is None and mode == 0o120000:
                        reason = "symbolic link"
                    if reason:
                        refused.append((f"{archive}::{info.filename}", UNSAFE_ENTRY, reason))
                    elif not info.is_dir():
                        keep.append(info)
                _check_sizes(archive, [(i.filename, i.file_size, i.compress_size) for i in keep], max_extract_bytes)
                for info in keep:
                    target = tmp / info.filename
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        with zf.open(info) as src:
                            _copy_entry(src, target, archive, info.filename, info.file_size, written, limit,
                                        max_extract_bytes)
                    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                        raise SourceError(
                            f"{archive}: entry '{info.filename}' cannot be extracted ({exc}; it declares "
                            f"{info.file_size:,} bytes, {info.compress_size:,} compressed): a corrupt or crafted "
                            "archive. Nothing was kept; check data.source."
                        ) from exc
        else:
            try:
                tf = tarfile.open(archive)
            except tarfile.TarError as exc:
                raise SourceError(f"{archive} is not a readable archive ({exc}): {_describe(archive)}. "
                                  "Check data.source.") from exc
            with tf:
                # a tar has no index: one pass over the headers (decompressing, writing nothing) first
                try:
                    members = tf.getmembers()
                except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                    raise SourceError(f"{archive} is damaged ({exc}). Nothing was extracted; check data.source "
                                      "or download it again.") from exc
                keep = []
                for member in members:
                    reason = _safe_member(member.name)
                    if reason is None and (member.issym() or member.islnk()):
                        reason = "link"
                    elif reason is None and not (member.isfile() or member.isdir()):
                        reason = "device or special file"
                    if reason:
                        refused.append((f"{archive}::{member.name}", UNSAFE_ENTRY, reason))
                    elif member.isfile():
                        keep.append(member)
                packed = archive.stat().st_size  # a tar.gz has no per-entry compressed size: the whole archive
                _check_sizes(archive, [(m.name, m.size, packed) for m in keep], max_extract_bytes)
                for member in keep:
                    target = tmp / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    if src is None:
                        continue
                    with src:
                        _copy_entry(src, target, archive, member.name, member.size, written, limit,
                                    max_extract_bytes)
        table = pd.DataFrame(refused, columns=["path", "reason", "detail"])
        with atomic_path(refused_csv) as tmp_csv:
            table.to_csv(tmp_csv, index=False)
    for row in refused:
        log.warning("Refused archive entry %s (%s)", row[0], row[2])
    return dest, table


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["path", "reason", "detail"])


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def materialize(source: str, cache_dir: str | Path, *, checksum: str | None = None,
                max_extract_bytes: int | None = None) -> tuple[Path, pd.DataFrame]:
    """A local folder for ``source``, and the archive entries refused on the way.

    ``checksum`` is checked for its form before anything is downloaded; ``max_extract_bytes``
    (``data.max_extract_bytes``) bounds what an archive may extract to (see :func:`extract`)."""
    if source is None or str(source).strip() == "":
        raise SourceError("data.source is empty: set it to a folder, an archive or an http(s) URL.")
    source = str(source).strip()
    _parse_checksum(checksum)  # a malformed data.checksum fails now, not after the download
    if max_extract_bytes is not None and int(max_extract_bytes) < 1:
        raise SourceError(f"data.max_extract_bytes={max_extract_bytes}: use a number of bytes, 1 or more, or null "
                          f"(max({AUTO_EXTRACT_FACTOR} x the archive's size, {AUTO_EXTRACT_FLOOR // _GiB} GiB)).")
    cache_dir = Path(cache_dir)
    if is_url(source):
        local = download(source, cache_dir / "downloads", checksum=checksum or KNOWN_CHECKSUMS.get(source))
    else:
        local = Path(source).expanduser()
        if not local.exists():
            raise SourceError(
                f"data.source not found: {local}. Pass an existing folder, a .tar.gz/.tgz/.zip archive or an "
                "http(s) URL, e.g. --params data.source=../shared/data/PetImages"
            )
        if local.is_dir():
            return local.resolve(), _empty()
        if not is_archive(local):
            raise SourceError(
                f"data.source {local} is a file but not an archive (.tar.gz, .tgz, .tar, .zip): "
                "pass the folder that holds the photos, or an archive of it."
            )
        if checksum:
            algo, digest = _parse_checksum(checksum)  # type: ignore[misc]
            if _file_digest(local, algo) != digest:
                raise SourceError(f"{local} does not match data.checksum; check the file or the checksum.")
    stat = local.stat()
    key = hashlib.sha256(f"{local.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return extract(local, cache_dir / "extracted" / f"{_archive_stem(local)}-{key}",
                   max_extract_bytes=max_extract_bytes)


def outside_links(root: str | Path, paths) -> list[str]:
    """For each of ``paths`` (files under ``root``): its real path when it resolves outside ``root``
    (a symbolic link to a file or folder elsewhere, followed), else "" (the manifest's ``resolved_path``)."""
    base = os.path.realpath(root)
    out = []
    for p in paths:
        real = os.path.realpath(p)
        out.append("" if real == base or real.startswith(base.rstrip(os.sep) + os.sep) else real)
    return out
