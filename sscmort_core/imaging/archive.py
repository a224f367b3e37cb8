"""Safe extraction of uploaded zip archives (path traversal, symlinks, zip bombs, size caps)."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from sscmort_core.errors import FileTooLargeError, UnsafeArchiveError, UnsupportedFormatError

DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
DEFAULT_MAX_RATIO = 200.0  # uncompressed / compressed; CT DICOM deflates by well under 10x
DEFAULT_MAX_MEMBERS = 20_000
RATIO_MIN_BYTES = 1024**2  # members smaller than this cannot do harm by ratio alone
_CHUNK = 1 << 20


def format_bytes(n: int) -> str:
    """Human-readable size: bytes below 1 MB, else MB with one decimal."""
    return f"{n:,} bytes" if n < 1_000_000 else f"{n / 1e6:,.1f} MB"


def _member_path(info: zipfile.ZipInfo, zip_path: Path) -> PurePosixPath:
    """The member's relative path, or UnsafeArchiveError for absolute / traversing / odd names."""
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or rel.is_absolute():
        raise UnsafeArchiveError(f"member {info.filename!r} has an absolute path", zip_path)
    if any(part == ".." for part in rel.parts):
        raise UnsafeArchiveError(f"member {info.filename!r} points outside the archive (..)",
                                 zip_path)
    if "\x00" in name:
        raise UnsafeArchiveError("a member name contains a NUL byte", zip_path)
    return rel


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_zip_members(zip_path: Path, infos: list[zipfile.ZipInfo], *, max_total_bytes: int,
                      max_ratio: float, max_members: int) -> list[tuple[zipfile.ZipInfo,
                                                                         PurePosixPath]]:
    """Validate the central directory before anything is written; return the file members."""
    if len(infos) > max_members:
        raise UnsafeArchiveError(f"the archive has {len(infos)} members (at most {max_members})",
                                 zip_path)
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    total = packed = 0
    for info in infos:
        rel = _member_path(info, zip_path)
        if _is_symlink(info):
            raise UnsafeArchiveError(f"member {info.filename!r} is a symbolic link", zip_path)
        if info.flag_bits & 0x1:
            raise UnsupportedFormatError(f"member {info.filename!r} is encrypted", zip_path)
        if info.is_dir():
            continue
        total += info.file_size
        packed += info.compress_size
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size >= RATIO_MIN_BYTES and ratio > max_ratio:
            raise UnsafeArchiveError(
                f"member {info.filename!r} expands {ratio:.0f}-fold (at most {max_ratio:.0f}): "
                "a zip bomb?", zip_path)
        files.append((info, rel))
    if total > max_total_bytes:
        raise FileTooLargeError(f"the archive expands to {format_bytes(total)}, over the "
                                f"{format_bytes(max_total_bytes)} limit", zip_path)
    if total >= RATIO_MIN_BYTES and total / max(1, packed) > max_ratio:
        raise UnsafeArchiveError(f"the archive expands {total / max(1, packed):.0f}-fold "
                                 f"(at most {max_ratio:.0f}): a zip bomb?", zip_path)
    return files


def extract_zip_safely(zip_path: Path, dest_dir: Path, *,
                       max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                       max_ratio: float = DEFAULT_MAX_RATIO,
                       max_members: int = DEFAULT_MAX_MEMBERS) -> list[Path]:
    """Extract regular files of ``zip_path`` under ``dest_dir``; return their paths.

    Refuses (UnsafeArchiveError) members with absolute paths, ``..`` parts, symlinks, more than
    ``max_members`` members or a compression ratio over ``max_ratio``; (FileTooLargeError) more
    than ``max_total_bytes`` uncompressed. The declared sizes are checked first, and the bytes
    actually written are counted too, so a lying header cannot exceed the cap.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsupportedFormatError(f"not a readable zip archive ({type(exc).__name__})",
                                     zip_path) from None
    out: list[Path] = []
    with zf:
        files = check_zip_members(zip_path, zf.infolist(), max_total_bytes=max_total_bytes,
                                  max_ratio=max_ratio, max_members=max_members)
        root = dest_dir.resolve()
        written = 0
        for info, rel in files:
            target = (root / Path(*rel.parts)).resolve()
            if root not in target.parents:
                raise UnsafeArchiveError(f"member {info.filename!r} points outside the archive",
                                         zip_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            written += _copy_member(zf, info, target, zip_path, max_total_bytes - written)
            out.append(target)
    return out


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_path: Path,
                 budget: int) -> int:
    n = 0
    try:
        with zf.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                n += len(chunk)
                if n > info.file_size or n > budget:
                    raise UnsafeArchiveError(f"member {info.filename!r} is larger than its "
                                             "header says", zip_path)
                dst.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, FileExistsError):
            raise UnsafeArchiveError(f"member {info.filename!r} appears twice", zip_path) from None
        raise UnsupportedFormatError(f"member {info.filename!r} cannot be extracted "
                                     f"({type(exc).__name__})", zip_path) from None
    return n
