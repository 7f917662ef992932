"""Downloading the canonical MNIST files, each verified against its published size and checksums.

A file replaces its target atomically only once it matches, so a broken download never leaves a
valid-looking file; a server that does not answer, or a transfer that stalls, ends with a
``DownloadError`` after a timeout.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ..files import atomic_write
from .mnist import MNIST_FILES, MnistFile

DEFAULT_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
URL_ENV_VAR = "MINIVAE_MNIST_URL"
URL_SCHEMES = ("http", "https", "file")
DOWNLOAD_TIMEOUT = 10.0     # seconds: to connect, for an answer, and the window of the stall check
STALL_BYTES = 16 * 1024     # fewer bytes than this in a whole timeout window is a stalled transfer
READ_CHUNK = 64 * 1024


class DownloadError(OSError):
    """A file could not be fetched, or what was fetched does not match its published checksum."""


def checksum_problem(content: bytes, file: MnistFile) -> str | None:
    """Why ``content`` is not the canonical ``file`` (size, MD5 or SHA-256), or None if it is."""
    if len(content) != file.size:
        return f"{len(content)} bytes, expected {file.size}"
    for algorithm, expected in (("md5", file.md5), ("sha256", file.sha256)):
        found = hashlib.new(algorithm, content).hexdigest()
        if expected is not None and found != expected:
            return f"{algorithm.upper()} {found}, expected {expected}"
    return None


def download_mnist(dest, base_url: str | None = None, files=MNIST_FILES, timeout: float = DOWNLOAD_TIMEOUT,
                   report=None, progress=None) -> dict[str, str]:
    """Fetch the MNIST files into ``dest``, verify their checksums, and return each name's status.

    ``base_url`` defaults to ``$MINIVAE_MNIST_URL`` or the canonical mirror; each file is fetched
    from ``base_url/name`` (http, https or file URLs) and replaces its target atomically only once
    its size and checksums match, so a broken download never leaves a valid-looking file. Files
    already present and valid are skipped. ``report``, if given, is called with a line per file;
    ``progress``, if given, is called with a function giving a line of the bytes fetched so far and
    the rate (e.g. ``Progress.update``).

    ``timeout`` (seconds) bounds the wait to connect and for each answer, and a transfer that
    brings fewer than 16 KiB in ``timeout`` seconds (a stalled or trickling server) fails with a
    ``DownloadError``. An empty ``base_url`` is a ``ValueError``, not the default mirror.
    """
    if base_url is not None and not base_url.strip():
        raise ValueError(f"download_mnist: the mirror URL is empty; give one (e.g. {DEFAULT_URL}) or leave "
                         f"--url out for ${URL_ENV_VAR} or the canonical mirror")
    base_url = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    if urllib.parse.urlsplit(base_url).scheme not in URL_SCHEMES:
        raise ValueError(f"download_mnist: the mirror URL {base_url!r} is not an http, https or file URL, "
                         f"e.g. {DEFAULT_URL}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    status = {}
    for file in files:
        target = dest / file.name
        if target.is_file() and checksum_problem(target.read_bytes(), file) is None:
            status[file.name] = "already present"
        else:
            _fetch(base_url.rstrip("/") + "/" + file.name, target, file, timeout, progress)
            status[file.name] = "downloaded"
        if report is not None:
            report(f"{target}: {status[file.name]}, checksums verified")
    return status


class StalledTransfer(OSError):
    """A transfer brought too few bytes in a whole timeout window."""


def _fetch(url: str, target: Path, file: MnistFile, timeout: float, progress=None) -> None:
    """Download ``url`` into memory, check it against ``file``, and only then write ``target``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            content = _read(response, file, timeout, progress)
    except StalledTransfer as err:
        raise DownloadError(f"download_mnist: {url} stalled: {err}; nothing was kept. Try again, or use "
                            f"another mirror with --url") from None
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, refused or cut connections
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"download_mnist: cannot fetch {url} ({reason}). Without network access, copy the files "
            f"{', '.join(f.name for f in MNIST_FILES)} by hand from any MNIST mirror into a directory "
            f"and pass --data-dir DIR to minivae train, or point --url (or ${URL_ENV_VAR}) at a "
            f"reachable mirror; minivae train without --data-dir needs no download") from None
    problem = checksum_problem(content, file)
    if problem is not None:
        raise DownloadError(f"download_mnist: {url} gave {problem}; nothing was kept. "
                            f"Try again, or use another mirror with --url")
    with atomic_write(target) as out:
        out.write(content)


def _read(response, file: MnistFile, timeout: float, progress=None) -> bytes:
    """The body of ``response`` (at most ``file.size + 1`` bytes: a longer one fails the size
    check), raising ``StalledTransfer`` when a ``timeout``-second window brings under STALL_BYTES."""
    parts, received, limit = [], 0, file.size + 1
    started = window_start = time.monotonic()
    window_bytes = 0
    read = getattr(response, "read1", None) or response.read
    while received < limit:
        part = read(min(READ_CHUNK, limit - received))
        if not part:
            break
        parts.append(part)
        received += len(part)
        window_bytes += len(part)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < STALL_BYTES:
                raise StalledTransfer(f"{window_bytes} bytes in the last {now - window_start:.0f} s "
                                      f"({received} of {file.size} in all)")
            window_start, window_bytes = now, 0
        if progress is not None:
            rate = received / max(now - started, 1e-9)
            progress(lambda: f"{file.name}: {received:,} of {file.size:,} bytes, {rate / 1e6:.2f} MB/s")
    return b"".join(parts)
