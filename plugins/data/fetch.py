"""Downloading a dataset's published archives: checksum, unpack, idempotent.

A source offers ``fetch(root, progress)`` (read by ``harness datasets fetch``)
built with :func:`fetcher` from its :class:`Resource` list.  Each file is
downloaded next to where it is unpacked, its MD5 compared with the published
one (a mismatch deletes the file and says so), then unpacked; a file already
present with the right checksum is not downloaded again, and a dataset whose
files are all in place is left alone.  ``$HARNESS_DATA_MIRROR`` replaces the
host: the file is fetched from ``<mirror>/<file name>`` (a local mirror, and
the tests' loopback server).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

#: progress(label, bytes done, total bytes or None)
Progress = Callable[[str, int, "int | None"], None]
CHUNK = 1 << 20


def data_home() -> Path:
    """Where datasets live without a ``root``: ``$HARNESS_DATA``, else
    ``$XDG_CACHE_HOME/harness/data`` (``~/.cache/harness/data``)."""
    if os.environ.get("HARNESS_DATA"):
        return Path(os.environ["HARNESS_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "harness" / "data"


@dataclass(frozen=True)
class Resource:
    """One published file: where it is, its MD5, the folder (relative to the
    data root) it is saved in, and whether it is a tar archive to unpack there."""

    url: str
    md5: str
    folder: str = ""
    unpack: bool = False

    @property
    def filename(self) -> str:
        """The file's name (the URL's last part, without a query)."""
        return self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def source_url(self) -> str:
        """The URL, on ``$HARNESS_DATA_MIRROR`` when set."""
        mirror = os.environ.get("HARNESS_DATA_MIRROR")
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


def md5_of(file: Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(res: Resource, dest: Path, progress: Progress | None, timeout: float = 30.0) -> None:
    """Download ``res`` to ``dest`` (through a ``.part`` file) and verify its MD5."""
    import urllib.error
    import urllib.request

    url = res.source_url()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(res.filename, done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"cannot download {url} ({reason}); download it by hand and place it "
                        f"at {dest}, then run the command again") from None
    got = md5_of(part)
    if got != res.md5:
        part.unlink()
        raise UserError(f"{url}: checksum mismatch (MD5 {got}, published {res.md5}); the "
                        f"download was removed, nothing was unpacked")
    part.replace(dest)


def unpack(archive: Path, into: Path) -> None:
    """Unpack a tar archive (any compression) into ``into``, refusing members
    that would land outside it."""
    try:
        with tarfile.open(archive) as tar:
            base = into.resolve()
            for member in tar.getmembers():
                target = (into / member.name).resolve()
                if base != target and base not in target.parents:
                    raise UserError(f"{archive}: member {member.name!r} would be written "
                                    f"outside {into}")
                if member.issym() or member.islnk():
                    raise UserError(f"{archive}: member {member.name!r} is a link; refused")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.12: no device files, no setuid
                tar.extractall(into, filter="data")
            else:
                tar.extractall(into)
    except tarfile.TarError as exc:
        raise UserError(f"{archive}: not a tar archive that can be unpacked ({exc})") from None


def fetch_resources(resources: list[Resource], root: Path, progress: Progress | None,
                    done: Callable[[Path], bool], name: str) -> str:
    """Download, verify and unpack every resource under ``root`` unless
    ``done(root)`` says the dataset is already in place; a line saying what happened."""
    root = Path(root).expanduser()
    if done(root):
        return f"{name}: already in place under {root}"
    for res in resources:
        folder = root / res.folder
        file = folder / res.filename
        if not (file.is_file() and md5_of(file) == res.md5):
            download(res, file, progress)
        if res.unpack:
            unpack(file, folder)
    if not done(root):
        raise UserError(f"{name}: downloaded and unpacked under {root}, but the expected files "
                        f"are still missing (a changed archive layout?)")
    return f"{name}: fetched into {root}"


def fetcher(name: str, resources: list[Resource], done: Callable[[Path], bool]):
    """``fetch(root, progress=None) -> str`` for a source factory's ``fetch`` attribute
    (``root`` None: :func:`data_home`)."""

    def fetch(root: Path | None, progress: Progress | None = None) -> str:
        # read at call time: a mirror's (or a test's) own checksums can replace them
        return fetch_resources(fetch.resources, data_home() if root is None else root,
                               progress, done, name)

    fetch.resources = resources
    return fetch
