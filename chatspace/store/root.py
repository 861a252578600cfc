"""The output root: every file operation of the store goes through one object, over fsspec.

A local folder (a path or `file://`) keeps the POSIX guarantees the store relies on: a write lands under
a hidden temporary name, is fsynced and renamed into place; the output lock is an `fcntl` lock. Any other
fsspec URL (`s3://bucket/prefix`, `gs://`, `az://`, `memory://`) is an object store: an object is written
in one request, so it appears under its final key only when complete; what counts as done is marked by a
small object written last (a unit record, the switch marker); and the lock is a lock object (see
`RootLock`).

Paths handed around are `PurePath`s inside the filesystem: a real `Path` for a local root, a
`PurePosixPath` (`bucket/prefix/...`, no scheme) for an object store. `url()` turns one back into what a
user would type.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import orjson

from chatspace.errors import UsageError

try:  # POSIX only; elsewhere (and on object stores) the lock is a lock object
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

#: A remote lock whose heartbeat is older than this belongs to a run that died.
LOCK_STALE_S = 60.0
LOCK_HEARTBEAT_S = 10.0
# A reader probing the lock holds it for microseconds; a starting run retries that long and more.
ACQUIRE_RETRY_S = 1.0


def is_url(location: str | os.PathLike) -> bool:
    """True for an fsspec URL other than file:// (which is a local folder)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for `url` from the environment. Credentials, region and profile come from the
    usual AWS_* variables through botocore itself; the endpoint of an S3-compatible store (MinIO, R2,
    Ceph) is taken from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL here, whatever botocore's version.
    Listings are never cached: workers in other processes write the files this process lists."""
    options: dict[str, Any] = {"use_listings_cache": False}
    if url.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
    return options


def remote_error(error: BaseException) -> str:
    """An object store's error (botocore, s3fs, gcsfs) as a short phrase for one line."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _quiet_object_store_loggers() -> None:
    """botocore says at INFO where it found credentials, once per process; a run's log is no place for it."""
    import logging

    for name in ("botocore", "aiobotocore", "s3fs"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _as_os_error(value: Any) -> bytes | OSError:
    """What fsspec returned for one file of a batch: its bytes, or the error as an OSError."""
    if isinstance(value, bytes | OSError):
        return value
    return OSError(remote_error(value) if isinstance(value, BaseException) else repr(value))


def temp_path(path: PurePath) -> PurePath:
    """The hidden temporary a local write goes through; the pid tells whose it was."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


class OutputRoot:
    """One output root (a local folder or an fsspec URL) and the file operations the store needs."""

    def __init__(self, location: str | os.PathLike):
        text = os.fspath(location)
        self.location = text
        if is_url(text):
            import fsspec

            _quiet_object_store_loggers()
            try:
                self.fs, inner = fsspec.core.url_to_fs(text, **storage_options(text))
            except ImportError as e:
                hint = " (pip install 'chatspace[s3]')" if text.startswith(("s3://", "s3a://")) else ""
                raise UsageError(f"output root {text}: {e}{hint}") from None
            except ValueError as e:
                raise UsageError(f"output root {text}: {e}") from None
            self.path: PurePath = PurePosixPath(inner.rstrip("/") or inner)
            self.is_local = False
        else:
            from fsspec.implementations.local import LocalFileSystem

            self.fs = LocalFileSystem()
            self.path = Path(text.removeprefix("file://")).expanduser().resolve()
            self.is_local = True

    def __reduce__(self):  # workers rebuild the filesystem from the URL (and their own credentials)
        return (OutputRoot, (self.url(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputRoot) and self.url() == other.url()

    def __hash__(self) -> int:
        return hash(self.url())

    def __repr__(self) -> str:
        return f"OutputRoot({self.url()!r})"

    # --- names --------------------------------------------------------------------------------------

    def join(self, *parts: str) -> PurePath:
        return self.path.joinpath(*parts)

    def url(self, path: PurePath | str | None = None) -> str:
        """What a user would type for `path` (default: the root): a local path, or `s3://bucket/key`."""
        p = self.path if path is None else path
        return str(p) if self.is_local else self.fs.unstrip_protocol(str(p))

    def as_path(self, text: str) -> PurePath:
        """A path string this filesystem returned (glob, find) as this root's path type."""
        return Path(text) if self.is_local else PurePosixPath(text)

    @property
    def arrow_filesystem(self) -> Any:
        """What to pass pyarrow as `filesystem=` (None: a local path needs none)."""
        return None if self.is_local else self.fs

    # --- reading ------------------------------------------------------------------------------------

    def exists(self, path: PurePath) -> bool:
        return Path(path).exists() if self.is_local else self.fs.exists(str(path))

    def is_file(self, path: PurePath) -> bool:
        return Path(path).is_file() if self.is_local else self.fs.isfile(str(path))

    def is_dir(self, path: PurePath) -> bool:
        return Path(path).is_dir() if self.is_local else self.fs.isdir(str(path))

    def size(self, path: PurePath) -> int:
        """Bytes of a file; OSError (FileNotFoundError) when it is not there."""
        return Path(path).stat().st_size if self.is_local else int(self.fs.size(str(path)))

    def read_bytes(self, path: PurePath) -> bytes:
        return Path(path).read_bytes() if self.is_local else self.fs.cat_file(str(path))

    def read_many(self, paths: list[PurePath]) -> dict[PurePath, bytes | OSError]:
        """Each file's bytes, or the OSError that reading it met. An object store is asked for all of
        them at once (fsspec's concurrent requests), not one round trip after another."""
        if self.is_local:
            out: dict[PurePath, bytes | OSError] = {}
            for p in paths:
                try:
                    out[p] = Path(p).read_bytes()
                except OSError as e:
                    out[p] = e
            return out
        fetched = self.fs.cat([str(p) for p in paths], on_error="return") if paths else {}
        by_key = {self.as_path(k): v for k, v in fetched.items()}
        return {p: _as_os_error(by_key.get(p, FileNotFoundError(str(p)))) for p in paths}

    def open(self, path: PurePath, mode: str = "rb"):
        return open(path, mode) if self.is_local else self.fs.open(str(path), mode)  # noqa: SIM115

    def sha256(self, path: PurePath, chunk: int = 1 << 20) -> str:
        h = hashlib.sha256()
        with self.open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        return h.hexdigest()

    def glob(self, directory: PurePath, pattern: str) -> list[PurePath]:
        """Files directly in `directory` matching `pattern` (hidden ones too when the pattern says so)."""
        if self.is_local:
            d = Path(directory)
            return sorted(d.glob(pattern)) if d.is_dir() else []
        return sorted(self.as_path(p) for p in self.fs.glob(f"{directory}/{pattern}"))

    def find(self, directory: PurePath, name: str) -> list[PurePath]:
        """Every file called `name` anywhere under `directory`, sorted."""
        if self.is_local:
            d = Path(directory)
            return sorted(d.rglob(name)) if d.is_dir() else []
        found = self.fs.find(str(directory)) if self.fs.isdir(str(directory)) else []
        return sorted(self.as_path(p) for p in found if p.rsplit("/", 1)[-1] == name)

    # --- writing ------------------------------------------------------------------------------------

    def upload(self, local: Path, path: PurePath) -> None:
        """Copy a local file (a run's log) to `path` under this root."""
        if self.is_local:
            if Path(local) != Path(path):
                self.write_atomic(path, Path(local).read_bytes())
            return
        self.fs.put_file(str(local), str(path))

    def makedirs(self, path: PurePath) -> None:
        if self.is_local:
            Path(path).mkdir(parents=True, exist_ok=True)  # object stores have no folders to make

    def write_atomic(self, path: PurePath, data: bytes | memoryview, durable: bool = False) -> None:
        """`path` holds all of `data` or is untouched. Local: a temporary (fsynced when `durable`)
        renamed into place; object store: one PUT, visible under its key only once complete."""
        if not self.is_local:
            self.fs.pipe_file(str(path), bytes(data))
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(temp_path(target))
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def write_json(self, path: PurePath, data: Any) -> None:
        """Write JSON atomically (indented, numpy values allowed)."""
        self.write_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))

    def overwrite_in_place(self, path: PurePath, data: bytes) -> bool:
        """Last resort on a full local disk: rewrite `path` within the space it already holds.

        Needs no new blocks, so it works when a temporary copy cannot be written; not atomic. False when
        it would not fit, or on an object store (which has no full disk to work around)."""
        if not self.is_local:
            return False
        try:
            with open(path, "r+b") as fh:
                if len(data) > os.fstat(fh.fileno()).st_size:
                    return False
                fh.write(data)
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            return False
        return True

    def remove(self, path: PurePath) -> None:
        """Remove a file; nothing to do when it is not there."""
        if self.is_local:
            Path(path).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(str(path))

    def remove_tree(self, path: PurePath) -> None:
        """Remove a folder (every key under a prefix) and all it holds; quiet when absent."""
        if self.is_local:
            shutil.rmtree(path, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            if self.fs.exists(str(path)):
                self.fs.rm(str(path), recursive=True)

    def remove_empty_dir(self, path: PurePath) -> None:
        """Remove a folder when it is empty (object stores have no empty folders)."""
        if self.is_local:
            with contextlib.suppress(OSError):
                Path(path).rmdir()

    def rename(self, source: PurePath, target: PurePath) -> None:
        """Move a file or folder to a name that is free. Local: one atomic rename; object store: a copy
        of every key, then the originals removed (callers make the move restartable with a marker)."""
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(source).rename(target)
            return
        if self.fs.isdir(str(source)):
            self.fs.copy(f"{source}/", f"{target}/", recursive=True)
            self.fs.rm(str(source), recursive=True)
        else:
            self.fs.mv(str(source), str(target))

    def ensure_writable(self) -> OutputRoot:
        """Create the root and check it can be written; one clear error if not."""
        probe = self.join(f".chatspace-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            self.makedirs(self.path)
            self.write_atomic(probe, b"")
            self.remove(probe)
        except OSError as e:
            raise UsageError(
                f"output root {self.url()} is not writable ({e.strerror or e}); set --output-root or "
                "$CHATSPACE_ROOT"
            ) from None
        except Exception as e:  # noqa: BLE001 - a remote store's own errors (credentials, endpoint)
            raise UsageError(f"output root {self.url()} is not writable ({remote_error(e)})") from None
        return self

    def check_exists(self) -> None:
        """UsageError in one line when the root is not there, or its store cannot be reached."""
        try:
            there = self.exists(self.path)
        except Exception as e:  # noqa: BLE001 - a remote store's own errors (credentials, endpoint)
            raise UsageError(f"output root {self.url()} cannot be read ({remote_error(e)})") from None
        if not there:
            raise UsageError(f"output root {self.url()} does not exist")

    # --- the lock -----------------------------------------------------------------------------------

    def lock(self, path: PurePath, busy_message: str) -> RootLock:
        """Hold the lock at `path` until `.close()`; UsageError(busy_message) when another run holds it."""
        lock = RootLock(self, path)
        lock.acquire(busy_message)
        return lock

    def is_locked(self, path: PurePath) -> bool:
        """True while some run holds the lock at `path` (a probe; never blocks)."""
        if self.is_local and fcntl is not None:
            try:
                handle = open(path)  # noqa: SIM115 - closed below
            except OSError:
                return False  # no lock file: no run has ever held it
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError:
                return False
            finally:
                handle.close()
            return False
        owner = _read_lock_object(self, path)
        return owner is not None and not _is_stale(owner)


class RootLock:
    """One run at a time per output, and a way for readers to tell a live run from a killed one.

    Local (POSIX): an `fcntl` lock on a file; the kernel drops it when the process dies.
    Elsewhere: a lock object `{owner, heartbeat}`. It is created with a conditional create where the
    filesystem has one (`xb` mode) and otherwise written, then read back to see who won; a thread
    rewrites the heartbeat every LOCK_HEARTBEAT_S seconds. A lock whose heartbeat is older than
    LOCK_STALE_S belongs to a killed run and is taken over.
    """

    def __init__(self, root: OutputRoot, path: PurePath):
        self.root, self.path = root, path
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._handle = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, busy_message: str) -> None:
        if self.root.is_local and fcntl is not None:
            self._acquire_fcntl(busy_message)
        else:
            self._acquire_object(busy_message)

    def _acquire_fcntl(self, busy_message: str) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the life of the run
        deadline = time.monotonic() + ACQUIRE_RETRY_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._handle = handle
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise UsageError(busy_message) from None
                time.sleep(0.05)

    def _payload(self) -> bytes:
        return orjson.dumps({"owner": self.owner, "host": socket.gethostname(), "heartbeat": time.time()})

    def _acquire_object(self, busy_message: str) -> None:
        current = _read_lock_object(self.root, self.path)
        if current is not None and not _is_stale(current):
            raise UsageError(busy_message)
        if current is None and _create_exclusive(self.root, self.path, self._payload()) is False:
            raise UsageError(busy_message)  # another run created it between our look and our write
        self.root.write_atomic(self.path, self._payload())
        time.sleep(0.2)  # two runs taking over a stale lock at once: the later write wins, both look
        won = _read_lock_object(self.root, self.path)
        if won is None or won.get("owner") != self.owner:
            raise UsageError(busy_message)
        self._beat = threading.Thread(target=self._heartbeat, name="chatspace-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(LOCK_HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is retried; staleness needs several
                self.root.write_atomic(self.path, self._payload())

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            return
        if self._beat is not None:
            self._stop.set()
            self._beat.join(timeout=LOCK_HEARTBEAT_S)
            self._beat = None
            with contextlib.suppress(Exception):
                current = _read_lock_object(self.root, self.path)
                if current is not None and current.get("owner") == self.owner:
                    self.root.remove(self.path)


def _read_lock_object(root: OutputRoot, path: PurePath) -> dict | None:
    try:
        data = orjson.loads(root.read_bytes(path))
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _is_stale(owner: dict) -> bool:
    """No heartbeat for LOCK_STALE_S seconds, or its process is gone from this very machine."""
    import psutil

    try:
        if time.time() - float(owner.get("heartbeat", 0)) > LOCK_STALE_S:
            return True
        host, pid = str(owner.get("owner", "")).split(":")[:2]
        return host == socket.gethostname() and not psutil.pid_exists(int(pid))
    except (TypeError, ValueError):
        return True


def _create_exclusive(root: OutputRoot, path: PurePath, data: bytes) -> bool | None:
    """Create `path` only if absent: True when created, False when it already existed, None when the
    filesystem cannot do a conditional create."""
    try:
        with root.fs.open(str(path), "xb") as fh:
            fh.write(data)
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError, TypeError):
        return None
    return True
