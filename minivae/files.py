"""Writing files so that none is ever lost or left half-written.

Every file minivae writes goes through ``atomic_write``: the bytes go to a temporary file beside
the target (``.<name>.<random>.part``), which is flushed, fsynced and renamed onto the target, so
the target is always either its previous content or the complete new one. A process killed
mid-write leaves only its temporary file, which ``remove_stale_temporaries`` clears.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".part"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write of ``path`` failed for lack of space (or quota); the message names the file and,
    after "free some space, then", what to do next (``then``)."""

    def __init__(self, number: int, path, then: str = "run the command again"):
        super().__init__(f"no space left on the device to write {path} ({os.strerror(number)}); nothing "
                         f"was replaced: free some space, then {then}")
        self.errno, self.path = number, Path(path)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file that replaces ``path`` only once the block succeeds.

    The file is a temporary one in the same directory; on success it is flushed, fsynced and
    renamed onto ``path`` with ``os.replace`` (atomic), on any failure it is removed, so ``path``
    is always either its previous content or the complete new one. A full disk raises
    ``DiskFullError`` naming ``path``; any other failure an ``OSError`` of the same type naming
    ``path`` (never the temporary file) and the true cause (see ``write_problem``).
    """
    if os.fspath(path) == "":
        raise _error(FileNotFoundError(errno.ENOENT, ""), "cannot write a file at an empty path")
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        raise _named(err, path) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(err, OSError) and not isinstance(err, DiskFullError):
            raise _named(err, path) from None
        raise


def write_bytes(path, content: bytes) -> Path:
    """Write ``content`` to ``path`` atomically (see ``atomic_write``) and return the path."""
    path = Path(path)
    with atomic_write(path) as file:
        file.write(content)
    return path


def _named(err: OSError, path: Path) -> OSError:
    """``err`` as an error of the same type that names ``path`` (never the temporary file) and its
    true cause, and for a full disk says what to do."""
    if err.errno in DISK_FULL:
        return DiskFullError(err.errno, path)
    return _error(err, f"cannot write {path}: {write_problem(path) or err.strerror or err}")


def write_problem(path, kind: str = "file") -> str | None:
    """Why no ``kind`` ("file" or "directory") can be written at ``path``, seen from the path
    itself: it is empty; it is a directory where a file is asked for, or a file where a directory
    is; a parent is a file; or (for a file) its directory does not exist. None if none of these."""
    if os.fspath(path) == "":
        return "the path is empty"
    path = Path(path)
    if kind == "file" and path.is_dir():
        return "it is a directory"
    if kind == "directory" and path.exists() and not path.is_dir():
        return "it is an existing file, not a directory"
    ancestor = next((parent for parent in path.parents if parent.exists() or parent.is_symlink()), None)
    if ancestor is not None and not ancestor.is_dir():
        return f"{ancestor} is {'a file' if ancestor.exists() else 'a broken link'}, not a directory"
    if kind == "file" and not path.parent.is_dir():
        return f"its directory {path.parent} does not exist"
    return None


def make_directory(path, what: str, exist_ok: bool = True) -> Path:
    """Create the directory ``path`` and its parents if need be, and return it as a ``Path``; unless
    ``exist_ok``, an existing ``path`` raises ``FileExistsError``.

    An ``OSError`` of the same type names ``path`` (as "``what`` ``path``", e.g. "the run folder
    runs/a") and the true cause: an empty path, a parent that is a file, no permission, a
    read-only file system; a full disk raises ``DiskFullError``.
    """
    if os.fspath(path) == "":
        raise _error(FileNotFoundError(errno.ENOENT, ""), f"cannot create {what}: its path is empty")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise DiskFullError(err.errno, path) from None
        raise _error(err, f"cannot create {what} {path}: {write_problem(path, 'directory') or err.strerror or err}"
                     ) from None
    return path


def _error(err: OSError, message: str) -> OSError:
    """An error of ``err``'s type and errno whose text is ``message`` alone (no "[Errno n]")."""
    named = type(err)(message)
    named.errno = err.errno
    return named


def remove_stale_temporaries(directory, names) -> list[Path]:
    """Remove the temporary files that writes of ``names`` in ``directory`` left behind; return them.

    Call it only while no other process writes these names there (a run holds its folder's lock).
    """
    directory, removed = Path(directory), []
    for name in names:
        for stale in directory.glob(f".{name}.*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def refuse_overwriting_input(output, inputs, what: str) -> None:
    """Raise ``ValueError`` if ``output`` is one of the files ``inputs`` (same file, any spelling)."""
    output = Path(output)
    for source in inputs:
        source = Path(source)
        same = (output.resolve() == source.resolve()
                or (output.exists() and source.exists() and os.path.samefile(output, source)))
        if same:
            raise ValueError(f"{what}: the output {output} is the input {source}; writing it would destroy "
                             f"the input: choose another output path")
