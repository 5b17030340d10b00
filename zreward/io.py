"""File helpers: JSONL with line numbers in errors, and atomic writes (temp path, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from zreward.errors import InputError


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yields (line_number, object) for each non-blank line; a malformed line names file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                # utf-8-sig: files saved by Windows tools start with a byte-order mark.
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_json(path: str | os.PathLike, what: str = "JSON"):
    """One JSON document; a malformed file names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed {what} ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling path to write; on success it replaces `path`, on error it is removed.

    The file gets the permissions a plain open() would give (mkstemp's are private, 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file path")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def check_output_dir(out: str | os.PathLike, marker: str, kind: str, protected=(), option: str = "--out") -> Path:
    """Refuses, before any work, an output folder whose replacement would destroy something: OUT may be
    new, an empty folder, or an earlier `kind` ("an engine": a folder holding `marker`, replaced). A file,
    a folder of other things, a path under a file, or a folder that is or holds one of the `protected`
    inputs is an error. Returns OUT as an absolute path."""
    out = Path(out).absolute()
    for root in protected:
        root = Path(root).absolute()
        if out == root or out in root.parents:
            raise InputError(f"{out}: {option} would replace its own input {root}; choose another {option}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{out}: {parent} is a file, not a folder; choose another {option}")
            break
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is a file; choose another {option}")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise InputError(f"{out}: exists and is not {kind} (no {marker}); choose a new or empty {option} "
                         f"(only {kind} there is replaced)")
    return out


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary sibling directory; on success it replaces `path`, on error it is removed.

    An interrupted writer therefore never leaves a directory at `path` that looks complete.
    """
    path = Path(path).absolute()  # "." or "out/" name their folder: the temporary sibling needs its name
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's are private (0700); a plain mkdir's are not
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
