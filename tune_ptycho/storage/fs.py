"""Files wherever the experiment lives: a local path, a shared filesystem or ``s3://``.

Every read and write of an experiment goes through these few functions, on pyarrow's
filesystems (the layer Ray Tune's own storage uses), so no caller tells a bucket from a disk.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from ptycho_model.errors import InputError

__all__ = ["StorageError", "check_writable", "delete", "entries", "exists", "is_remote",
           "newest_entry", "read_bytes", "read_text", "write_text"]


class StorageError(InputError):
    """Results could not be written there (no rights, a file in the way, too little space)."""


def is_remote(storage_path: str) -> bool:
    """Whether ``storage_path`` is a URI of a remote filesystem (``s3://...``), not a local path."""
    return "://" in storage_path and not storage_path.startswith("file://")


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and the path on it; a URI that names no reachable
    filesystem (an unknown scheme, a bucket that does not resolve) is a :class:`StorageError`."""
    if is_remote(uri):
        try:
            return pafs.FileSystem.from_uri(uri)
        except (OSError, ValueError) as e:  # pyarrow raises both
            raise StorageError(f"{uri!r} cannot be reached: {e}") from None
    return pafs.LocalFileSystem(), uri


def write_text(uri: str, text: str) -> None:
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def entries(uri: str, prefix: str, suffix: str = "") -> list[str]:
    """The URIs of the ``prefix*suffix`` entries directly in ``uri``, sorted by name: Tune stamps
    its snapshots with their time and numbers checkpoints with zero padding, so the newest sorts
    last. Empty when ``uri`` cannot be listed."""
    fs, path = _fs(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path))
    except OSError:
        return []
    found = sorted(i.base_name for i in infos
                   if i.base_name.startswith(prefix) and i.base_name.endswith(suffix))
    return [f"{uri.rstrip('/')}/{name}" for name in found]


def newest_entry(uri: str, prefix: str, suffix: str = "") -> str | None:
    """The URI of the newest ``prefix*suffix`` entry directly in ``uri`` (:func:`entries`), or
    None."""
    found = entries(uri, prefix, suffix)
    return found[-1] if found else None


def delete(uri: str) -> None:
    """Remove the file at ``uri``; one already gone is no error."""
    fs, path = _fs(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError:  # e.g. a parent that is a regular file: nothing can exist below it
        return False


def check_writable(storage_path: str) -> None:
    """Fail before any trial if results could not be written (a path under a file, no rights)."""
    probe = storage_path.rstrip("/") + "/.tune-ptycho-write-check"
    try:
        write_text(probe, "ok")
        delete(probe)
    except OSError as e:  # pyarrow's IO errors are OSErrors too
        raise StorageError(f"storage/path={storage_path!r} is not writable: {e}") from None
