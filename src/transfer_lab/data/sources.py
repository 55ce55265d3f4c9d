"""Turn ``data.source`` (a folder, a local archive or an http(s) URL) into a local folder.

Downloads are streamed with a progress bar into ``<name>.part``, resumed from where they stopped
(HTTP Range), verified against a checksum and only then renamed to their final name, so a failed or
interrupted download never leaves a file that looks complete. Archives are extracted into a
temporary folder that is renamed when complete; entries that would land outside it (absolute
paths, ``..``, links, devices) are refused and reported.
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
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pandas as pd

from transfer_lab.io.files import atomic_dir, atomic_path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
UNSAFE_ENTRY = "unsafe_archive_entry"
_CHUNK = 1 << 20

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
    algo = algo.lower()
    if algo not in ("md5", "sha1", "sha256", "sha512"):
        raise SourceError(f"data.checksum '{checksum}': use 'sha256:<hex>' or 'md5:<hex>'.")
    return algo, digest.lower()


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
        if expected is None or _file_digest(final, expected[0]) == expected[1]:
            log.info("Using the already downloaded %s", final)
            return final
        log.warning("%s does not match data.checksum; downloading it again.", final)
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
            part.unlink()
            raise SourceError(
                f"Checksum mismatch for {url}: expected {expected[0]} {expected[1]}, got {got}. The partial file "
                "was deleted. Check data.checksum, or the URL if it points to another file."
            )
    os.replace(part, final)
    return final


def _safe_member(name: str) -> str | None:
    """Why an archive entry name is unsafe, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "path escapes the target folder (..)"
    return None


def extract(archive: str | Path, dest: str | Path) -> tuple[Path, pd.DataFrame]:
    """Extract ``archive`` into ``dest`` (atomically). Returns the folder and the refused entries."""
    archive, dest = Path(archive), Path(dest)
    refused: list[tuple[str, str, str]] = []
    refused_csv = dest.with_name(dest.name + ".refused.csv")
    if dest.is_dir():  # only a finished extraction is ever renamed to ``dest``
        table = pd.read_csv(refused_csv) if refused_csv.exists() else _empty()
        return dest, table
    with atomic_dir(dest) as tmp:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    reason = _safe_member(info.filename)
                    mode = (info.external_attr >> 16) & 0o170000
                    if reason is None and mode == 0o120000:
                        reason = "symbolic link"
                    if reason:
                        refused.append((f"{archive}::{info.filename}", UNSAFE_ENTRY, reason))
                        continue
                    if info.is_dir():
                        continue
                    target = tmp / info.filename
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
        else:
            try:
                tf = tarfile.open(archive)
            except tarfile.TarError as exc:
                raise SourceError(f"{archive} is not a readable archive ({exc}). Check data.source.") from exc
            with tf:
                for member in tf:
                    reason = _safe_member(member.name)
                    if reason is None and (member.issym() or member.islnk()):
                        reason = "link"
                    elif reason is None and not (member.isfile() or member.isdir()):
                        reason = "device or special file"
                    if reason:
                        refused.append((f"{archive}::{member.name}", UNSAFE_ENTRY, reason))
                        continue
                    if member.isdir():
                        continue
                    target = tmp / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    if src is None:
                        continue
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
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


def materialize(source: str, cache_dir: str | Path, *, checksum: str | None = None) -> tuple[Path, pd.DataFrame]:
    """A local folder for ``source``, and the archive entries refused on the way."""
    if source is None or str(source).strip() == "":
        raise SourceError("data.source is empty: set it to a folder, an archive or an http(s) URL.")
    source = str(source).strip()
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
    return extract(local, cache_dir / "extracted" / f"{_archive_stem(local)}-{key}")
