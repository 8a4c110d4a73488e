"""Safe writes and verified reads.

Atomic writes: a kill at any moment leaves either the old file or the new one, never half of one.
A full disk or a folder that cannot be written is one BequestError that names the path (and, for a
full disk, how much was being written and how much is free); the previous state stays intact.

Verified reads: what bequest reuses across runs (cached teachers, cached tensors, checkpoints) is
written with the size and sha256 of every file beside it, and checked before it is trusted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from filelock import FileLock
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from bequest.errors import BequestError, warn

MANIFEST = ".bequest-manifest.json"
_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


class Damaged(Exception):
    """A verified file or folder does not hold what was written: the message says what differs."""


def tensor_bytes(model) -> int:
    """What a model's weights take on disk (safetensors stores them as they are)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _free_mb(path: Path) -> float:
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 2**20


def write_failure(error: OSError, path: Path, written: int = 0) -> BequestError | None:
    """The one-line error for a write that failed for want of space or permission; None for other errors."""
    path = Path(path)
    if error.errno in _SPACE:
        return BequestError(f"no space left to write {path}: about {max(written, 1) / 2**20:.1f} MB needed, "
                            f"{_free_mb(path):.1f} MB free there; free some space (or point --output-dir / cache_dir at "
                            "another disk) and run the same command again (with --resume for a run)")
    if error.errno in _ACCESS:
        return BequestError(f"cannot write {error.filename or path}: {error.strerror}; choose a folder you can write to "
                            "(--output-dir, cache_dir or $BEQUEST_CACHE)")
    return None


def check_writable(path: Path, what: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written (checked on its nearest existing parent)."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BequestError(f"{what} {path} cannot be created: {existing} is a file; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BequestError(f"{what} {path} is not writable ({existing}: permission denied or read-only): "
                           "choose a folder you can write to")


def as_os_error(error: Exception) -> OSError | None:
    """The OSError inside an error that reports one only in its message (safetensors: "... (os error 28)")."""
    if isinstance(error, OSError):
        return error
    found = re.search(r"os error (\d+)", str(error))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


@contextmanager
def _failures_named(path: Path, tmp: Path, expected: int = 0):
    try:
        yield
    except (OSError, SafetensorError) as error:
        cause = as_os_error(error)
        failure = write_failure(cause, path, max(expected, _size(tmp))) if cause is not None else None
        if failure is None:
            raise
        raise failure from None


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise (write_failure(error, path) or error) from None
    try:
        with _failures_named(path, Path(tmp)):
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def replacing(path: str | Path):
    """Yield a temporary file path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _failures_named(path, tmp):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def building_dir(final: str | Path, expected_bytes: int = 0):
    """Yield a temporary folder beside `final`; rename it to `final` only if the block succeeds.
    The folder gets a manifest of its files, so a later reader can verify it (`check_manifest`).
    `expected_bytes`, what the folder will hold about, is what a full disk's error says is needed."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as error:
        raise (write_failure(error, final) or error) from None
    try:
        with _failures_named(final, tmp, expected_bytes):
            yield tmp
            _write_manifest(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stale_temporaries(final: Path) -> list[Path]:
    """What building_dir / replacing / write_text left beside `final` when a kill stopped them."""
    return sorted(Path(final).parent.glob(f".{Path(final).name}.*tmp"))


def sha256_file(path: str | Path) -> str:
    """Hex digest of a file's bytes, to pin the exact data a result came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _manifest(folder: Path) -> str:
    entries = {name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for name, p in _files(folder).items()}
    return json.dumps(entries, indent=1) + "\n"


def _write_manifest(folder: Path) -> None:
    (folder / MANIFEST).write_text(_manifest(folder))


def refresh_manifest(folder: Path) -> None:
    """Rewrite a finished folder's manifest after files were added to it or changed on purpose."""
    write_text(Path(folder) / MANIFEST, _manifest(Path(folder)))


def check_manifest(folder: Path) -> None:
    """Raise Damaged unless every file of `folder` has the size and hash its manifest says (and none is missing)."""
    folder = Path(folder)
    try:
        entries = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise Damaged(f"{folder / MANIFEST} is missing or unreadable") from None
    present = _files(folder)
    for name, expected in entries.items():
        path = present.get(name)
        if path is None:
            raise Damaged(f"{folder / name} is missing")
        if path.stat().st_size != expected["size"]:
            raise Damaged(f"{folder / name} has {path.stat().st_size} bytes, {expected['size']} were written")
        if sha256_file(path) != expected["sha256"]:
            raise Damaged(f"{folder / name} does not hold the bytes that were written (sha256 differs)")


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(f"{name}{arrays[name].dtype}{arrays[name].shape}".encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], key: str) -> None:
    """Save arrays atomically as safetensors, with the cache key they belong to and a hash of their bytes."""
    with replacing(path) as tmp:
        save_file(arrays, str(tmp), metadata={"key": key, "sha256": _arrays_digest(arrays)})


def entry_lock(entry: Path) -> FileLock:
    """The lock of one cache entry (`<cache>/<kind>/<name>`), kept apart in `<cache>/locks/` so the
    kinds' folders hold nothing but entries."""
    entry = Path(entry)
    locks = entry.parent.parent / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{entry.parent.name}-{entry.name}.lock"))


def cached_arrays(path: str | Path, key: str, build) -> dict[str, np.ndarray]:
    """The arrays cached at `path` for `key`, else `build()`'s, which are cached there; a damaged
    cache file is reported in one line and rebuilt. Processes that want the same entry at once
    (runs sharing a cache, DDP peers) take turns: the first builds it, the others read it."""
    path = Path(path)
    with entry_lock(path):
        try:
            found = load_arrays(path, key)
        except Damaged as damage:
            warn(f"{damage}: rebuilding it")
            found = None
        if found is None:
            for stale in stale_temporaries(path):  # a killed writer's; no live one, the lock is ours
                stale.unlink(missing_ok=True)
            found = build()
            save_arrays(path, found, key)
    return found


def load_arrays(path: str | Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays `save_arrays` wrote for `key`; None when there is no file; Damaged when it is not that."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise Damaged(f"{path} cannot be read ({str(error).splitlines()[0]})") from None
    if metadata.get("key") != key:
        raise Damaged(f"{path} belongs to another cache entry")
    if metadata.get("sha256") != _arrays_digest(arrays):
        raise Damaged(f"{path} does not hold the numbers that were written (sha256 differs)")
    return arrays
