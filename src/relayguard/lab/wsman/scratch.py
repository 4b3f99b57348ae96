"""A twin's temporary files: the part of a Windows file system the payload file ops touch.

Large scripts reach a host in chunks (``file.append_chunk``), run from a file (``file.run``,
``powershell -File``) and are removed (``file.remove``). The twin keeps such files in one
scratch directory of its own; the Windows path the client names is a key, never a host path:
it is normalised (separators, case, as NTFS compares names) and hashed into a file name, so no
path a client sends can reach outside the scratch directory.

Limits keep a runaway client from filling the disk: a file and the whole store have a size
cap, and going over fails like a full disk ("There is not enough space on the disk.").
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024

# Characters .NET Framework refuses in a path ("Illegal characters in path."), plus controls.
_ILLEGAL = re.compile(r'[<>"|?*\x00-\x1f]')
_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")


class ScratchError(Exception):
    """A file operation that fails on Windows too; the message is the .NET one."""


class ScratchFileMissing(ScratchError):
    """The named file does not exist."""


def normalize_windows_path(path: str) -> str:
    """A canonical form of an absolute drive path (``C:\\dir\\file.ps1``), case-folded.

    Raises ScratchError for paths Windows would refuse and for relative paths (the twin has
    no working directory to resolve them against).
    """
    if not path or _ILLEGAL.search(path):
        raise ScratchError("Illegal characters in path.")
    unified = re.sub(r"[\\/]+", r"\\", path.strip())
    if not _DRIVE_PATH.match(unified):
        raise ScratchError(
            f"relayguard twin: only absolute drive paths are supported, not '{path}'."
        )
    parts: list[str] = []
    for part in unified[3:].split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        # Windows drops trailing dots and spaces of each name component.
        parts.append(part.rstrip(". "))
    return (unified[:3] + "\\".join(parts)).casefold()


def windows_extension(path: str) -> str:
    """The extension of the last component of a Windows path, lower case (``.ps1``)."""
    name = re.split(r"[\\/]", path)[-1]
    return os.path.splitext(name)[1].lower()


class ScratchStore:
    """Files addressed by Windows path, stored under one directory (created 0700)."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
    ) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)

    def _file_for(self, windows_path: str) -> Path:
        key = normalize_windows_path(windows_path)
        return self.root / hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]

    def _total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())

    def append(self, windows_path: str, data: bytes) -> int:
        """Append `data` to the file (created if missing); returns the new size."""
        target = self._file_for(windows_path)
        with self._lock:
            current = target.stat().st_size if target.exists() else 0
            if (
                current + len(data) > self.max_file_bytes
                or self._total_bytes() + len(data) > self.max_total_bytes
            ):
                raise ScratchError("There is not enough space on the disk.")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(data)
            return current + len(data)

    def read(self, windows_path: str) -> bytes:
        target = self._file_for(windows_path)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise ScratchFileMissing(f"Could not find file '{windows_path}'.") from None

    def exists(self, windows_path: str) -> bool:
        return self._file_for(windows_path).is_file()

    def remove(self, windows_path: str) -> bool:
        """Delete the file; False if there was none."""
        target = self._file_for(windows_path)
        with self._lock:
            try:
                target.unlink()
            except FileNotFoundError:
                return False
            return True


def decode_script_file(data: bytes) -> str:
    """A .ps1 file's text as Windows PowerShell 5.1 reads it.

    A byte-order mark decides (UTF-8, UTF-16 LE/BE); without one, 5.1 reads the file in the
    system's ANSI code page (Windows-1252 on an en-US host), so UTF-8 without BOM turns
    non-ASCII characters into mojibake exactly as it would on Windows.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode("cp1252", errors="replace")
