"""Importers: published preference datasets -> the zreward data format (see zreward.data.dataset).

Each importer writes `out` through zreward.io.atomic_dir: the result is built in a temporary
sibling, loaded back with `load_dataset`, and only then renamed into place, so a failed import
leaves nothing at `out`. An existing non-empty `out` is replaced only with overwrite=True.

Images. By default every image is copied into out/images/ (keeping the source's relative layout),
so the output is self-contained and can be moved; copy_images=False writes absolute paths to the
source files instead (no copy; the output then depends on the source staying where it is). No
symlinks: they break when a directory is archived or uploaded. Pick-a-Pic ships images as bytes,
which are always written as files, named by image uid (each image written once).

Splits. Published datasets keep their splits side by side (HPDv2's train.json / test.json,
ImageRewardDB's metadata-{train,validation,test}.parquet, Pick-a-Pic's data/{train,validation,
test,...}-*.parquet). A directory source that holds more than one split needs split= (CLI
`--split`): merging them would put test prompts into training. A file's split is its name's
prefix (`train-00000-of-00007.parquet`, `metadata-test.parquet`) or a folder named like one.

Missing images. skip_missing=True (CLI `--skip-missing`) leaves out the rows whose image file is
absent (a partial download such as ImageRewardDB's 1k-8k subsets) and counts them; by default a
missing image is an error. A path that does not resolve is also looked up by its file name
anywhere below the dataset root (the published zips extract flat, json beside the images).

HPDv2 (HPSv2). `train.json`: [{"prompt", "file_path" (or "image_path"): [a, b],
"human_preference": [1, 0]}] -> one pair per entry (the entry with the larger value is preferred;
equal values are a tie). `test.json`: [{"prompt", "image_path": [...], "rank": [...]}] -> every
pair of the entry's images, lower rank preferred, equal ranks a tie; without "rank",
"raw_annotations" ([{"rank": [...], "user_hash"}] as the dataset card gives it, or bare rank
lists) is averaged over annotators. Images are looked up in <json dir>/<json stem>/ (the
published layout: test.json beside test/) and then <json dir>/, or in image_root. HPDv2 has no
per-dimension scores, so the output is pairs only (enough for HPA).

Pick-a-Pic (v1 / v2 parquet rows): caption, jpg_0, jpg_1 (bytes), label_0, label_1 (1/0: the
image with label 1 won; 0.5/0.5: a tie), image_0_uid, image_1_uid, and optionally has_label /
are_different (rows without a label or with two identical images are skipped and counted).
Pairs only.

ImageRewardDB (its per-image JSON rows or metadata parquet): prompt_id, prompt, image_path
(relative to the dataset root), rank, overall_rating, image_text_alignment_rating,
fidelity_rating (ratings 1..7, one expert each). Mapping: image_text_alignment_rating ->
alignment, fidelity_rating -> fidelity, each rescaled linearly from 1..7 onto the rubric's
low..high and snapped to its grid (with the default rubric 1..7 -> 1.0, 1.5, 2.5, 3.0, 3.5, 4.5,
5.0); the other dimensions are absent. overall_rating, rank, prompt_id and classification are
kept under "meta". A directory source reads its parquet tables if it has any, else every json /
jsonl file below it; image_path is looked up from the source's folder up to four levels above it
(the published json files sit in images/<split>/<part>/), or in image_root. Pairs: every pair of images of a prompt_id, lower rank preferred, equal ranks
a tie (the human ranking, not the two mapped dimensions, decides).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from zreward.data.dataset import Pair, Point, _text, load_dataset, write_dataset
from zreward.errors import InputError
from zreward.io import atomic_dir, read_json, read_jsonl
from zreward.rubric import Rubric, default_rubric

IMAGEREWARD_SCALE = (1.0, 7.0)
IMAGEREWARD_DIMENSIONS = {"image_text_alignment_rating": "alignment", "fidelity_rating": "fidelity"}
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass
class ImportReport:
    out: Path
    points: int
    pairs: int
    images: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out


class _Builder:
    """Collects points and pairs while placing images in the output directory being built."""

    def __init__(self, tmp: Path, copy_images: bool, finder: "_ImageFinder | None" = None):
        self.tmp, self.copy, self.finder = tmp, copy_images, finder
        self.points: list[Point] = []
        self.pairs: list[Pair] = []
        self.skipped: Counter = Counter()
        self._placed: dict[object, Path] = {}  # source file or blob name -> path in the output
        self._used: set[str] = set()

    def _dest(self, rel: str, key) -> Path:
        p = PurePosixPath(rel.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or str(p) in self._used:
            # Keep the output inside images/ and names unique whatever the source paths look like.
            p = PurePosixPath(hashlib.sha1(str(key).encode()).hexdigest()[:20] + p.suffix)
        self._used.add(str(p))
        return self.tmp / "images" / p

    def find(self, rel, where: str) -> Path | None:
        """The copied (or referenced) image for a source path; None when it is absent and skipped."""
        src = self.finder.find(rel, where)
        if src is None:
            self.skipped["image not found"] += 1
            return None
        return self.file(src, rel)

    def file(self, src: Path, rel: str) -> Path:
        if not self.copy:
            return src.absolute()
        if src not in self._placed:
            dest = self._dest(rel, src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            self._placed[src] = dest
        return self._placed[src]

    def blob(self, data, uid, where: str) -> Path:
        if isinstance(data, dict):  # a Hugging Face datasets Image cell: {"bytes", "path"}
            data = data.get("bytes")
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InputError(f"{where}: image bytes missing")
        name = uid if isinstance(uid, str) and _SAFE_NAME.match(uid) else hashlib.sha1(data).hexdigest()[:20]
        if name not in self._placed:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(io.BytesIO(data)) as img:
                    fmt = img.format
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(f"{where}: not a readable image ({e})") from None
            dest = self._dest(name + _FORMAT_EXT.get(fmt, f".{str(fmt).lower()}"), name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            self._placed[name] = dest
        return self._placed[name]

    def ranked_pairs(self, prompt: str, images: list[Path], ranks: list[float]) -> None:
        """Every pair of one prompt's images; lower rank preferred, equal ranks a tie."""
        for i in range(len(images)):
            for j in range(i + 1, len(images)):
                if images[i] == images[j]:
                    self.skipped["same image in a pair"] += 1
                    continue
                pref = "tie" if ranks[i] == ranks[j] else ("a" if ranks[i] < ranks[j] else "b")
                self.pairs.append(Pair(prompt, images[i], images[j], pref))


def _number(v, where: str, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where}: {what} must be a finite number, got {v!r}")
    return float(v)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class _ImageFinder:
    """Source image paths -> files: under each base in turn, then by file name below `root`."""

    def __init__(self, bases: list[Path], root: Path | None, skip_missing: bool):
        self.bases, self.root, self.skip_missing = bases, root, skip_missing
        self._by_name: dict[str, Path | None] | None = None  # built on the first miss only

    def _named(self, name: str) -> Path | None:
        if self._by_name is None:
            self._by_name = {}
            if self.root is not None and self.root.is_dir():
                for f in self.root.rglob("*"):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        # Two files with one name: ambiguous, so neither is chosen.
                        self._by_name[f.name] = None if f.name in self._by_name else f
        return self._by_name.get(name)

    def find(self, rel, where: str) -> Path | None:
        if not isinstance(rel, str) or not rel:
            raise InputError(f"{where}: image path must be a non-empty string, got {rel!r}")
        for base in self.bases:
            if (base / rel).is_file():
                return base / rel
        found = self._named(PurePosixPath(rel.replace("\\", "/")).name)
        if found is not None or self.skip_missing:
            return found
        raise InputError(f"{where}: image {rel!r} not found under {[str(b) for b in self.bases]} "
                         "(skip_missing=True / --skip-missing leaves such rows out)")


SPLIT_NAMES = ("train", "validation", "val", "dev", "test", "validation_unique", "test_unique")


def _split_of(file: Path, root: Path) -> str | None:
    """`train-00000-of-00001.parquet`, `metadata-test.parquet` or a file in a folder `train/` -> its split."""
    stem = file.stem.lower().removeprefix("metadata-")
    prefix = re.split(r"[-.]", stem)[0]
    if prefix in SPLIT_NAMES:
        return prefix
    for part in file.relative_to(root).parts[:-1]:
        if part.lower() in SPLIT_NAMES:
            return part.lower()
    return None


def _select_split(files: list[Path], root: Path, split: str | None) -> list[Path]:
    splits = {f: _split_of(f, root) for f in files}
    found = sorted({s for s in splits.values() if s is not None})
    if split is not None:
        chosen = [f for f in files if splits[f] == split]
        if not chosen:
            raise InputError(f"{root}: no files of split {split!r} (splits found: {found or 'none'})")
        return chosen
    if len(found) > 1:
        raise InputError(f"{root}: holds several splits ({', '.join(found)}); choose one with split= / --split "
                         "(merging them would mix test prompts into training)")
    return files


def _json_rows(file: Path) -> list:
    if file.suffix == ".jsonl":
        return [obj for _, obj in read_jsonl(file)]
    rows = read_json(file)
    if not isinstance(rows, list):
        raise InputError(f"{file}: expected a JSON list of entries, got {type(rows).__name__}")
    return rows


def _parquet_rows(file: Path, columns: Iterable[str]) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises its own error types for unreadable files
        raise InputError(f"{file}: not a readable parquet file ({e})") from None
    cols = [c for c in columns if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=64, columns=cols):  # rows hold image bytes: stay small
        yield from batch.to_pylist()


def _source_files(src, split: str | None) -> list[Path] | None:
    """The table files a source names (None for an iterable of rows), one split of a directory."""
    if not isinstance(src, (str, Path)):
        if split is not None:
            raise InputError(f"split={split!r} applies to a directory source, not to rows")
        return None
    src = Path(src)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    if not src.is_dir():
        if split is not None:
            raise InputError(f"{src}: split={split!r} applies to a dataset folder; this is one file")
        return [src]
    # Parquet tables if there are any (they repeat the json rows), else json / jsonl.
    files = sorted(src.rglob("*.parquet")) or sorted([*src.rglob("*.json"), *src.rglob("*.jsonl")])
    if not files:
        raise InputError(f"{src}: no .parquet, .json or .jsonl files found")
    return _select_split(files, src, split)


def _rows(src, files: list[Path] | None, columns: Iterable[str], label: str) -> Iterator[tuple[str, dict]]:
    """(where, row) from table files (parquet / json / jsonl) or, without files, from an iterable of dicts."""
    if files is None:
        for k, row in enumerate(src):
            yield f"{label} row {k}", row
        return
    for f in files:
        rows = _parquet_rows(f, columns) if f.suffix == ".parquet" else _json_rows(f)
        for k, row in enumerate(rows):
            yield f"{f} row {k}", row


def _check_out(out, src, overwrite: bool) -> Path:
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"{out}: already exists (overwrite=True / --overwrite replaces it)")
    if isinstance(src, (str, Path)):
        s = Path(src).absolute()
        if s == out or out in s.parents:
            raise InputError(f"{out}: the output would replace its own source {s}")
    return out


def _finish(b: _Builder, out: Path, rubric: Rubric) -> ImportReport:
    if not b.points and not b.pairs:
        raise InputError(f"{out}: nothing to import (skipped: {dict(b.skipped) or 'none'})")
    # Without any pair (no ranks), pairs are derived from the points' scores when read.
    write_dataset(b.tmp, b.points, b.pairs if b.pairs or not b.points else None)
    ds = load_dataset(b.tmp, rubric)  # what was written must load: checked before it is renamed
    return ImportReport(out, len(ds.points), len(ds.pairs), len({r.path for r in ds.images}), dict(b.skipped))


# --- HPDv2 ---------------------------------------------------------------------------------------
def _hpd_ranks(e: dict, n: int, where: str) -> list[float]:
    if "rank" in e:
        ranks = e["rank"]
    elif isinstance(e.get("raw_annotations"), list) and e["raw_annotations"]:
        # The card's form is [{"rank": [...], "user_hash": ...}]; bare rank lists are accepted too.
        per = [r.get("rank") if isinstance(r, dict) else r for r in e["raw_annotations"]]
        if not all(isinstance(r, list) and len(r) == n for r in per):
            raise InputError(f"{where}: raw_annotations must be rank lists of length {n}")
        ranks = [sum(_number(r[i], where, "rank") for r in per) / len(per) for i in range(n)]
    else:
        raise InputError(f"{where}: needs 'human_preference' (train) or 'rank' (test)")
    if not isinstance(ranks, list) or len(ranks) != n:
        raise InputError(f"{where}: 'rank' must be a list of {n} numbers, got {ranks!r}")
    return [_number(r, where, "rank") for r in ranks]


def import_hpdv2(src, out, split: str | None = None, *, image_root=None, copy_images: bool = True,
                 skip_missing: bool = False, rubric: Rubric | None = None, overwrite: bool = False) -> ImportReport:
    """HPDv2 train.json / test.json (a file, or the dataset directory with split) -> pairs-only dataset."""
    src = Path(src)
    if src.is_dir():
        names = [split] if split else ["test", "train"]
        found = [src / f"{n}.json" for n in names if (src / f"{n}.json").is_file()]
        if not found:
            raise InputError(f"{src}: no {' or '.join(n + '.json' for n in names)} found")
        if len(found) > 1:
            raise InputError(f"{src}: holds {' and '.join(f.name for f in found)}; choose one with split= / --split")
        src = found[0]
    elif not src.is_file():
        raise InputError(f"{src}: no such file or directory")
    elif split is not None:
        raise InputError(f"{src}: split={split!r} applies to a dataset folder; this is one file")
    out = _check_out(out, src, overwrite)
    bases = [Path(image_root)] if image_root else [src.parent / src.stem, src.parent]
    finder = _ImageFinder(bases, Path(image_root) if image_root else src.parent / src.stem, skip_missing)
    entries = _json_rows(src)
    with atomic_dir(out) as tmp:
        b = _Builder(tmp, copy_images, finder)
        for k, e in enumerate(entries):
            where = f"{src} entry {k}"
            if not isinstance(e, dict):
                raise InputError(f"{where}: expected an object, got {type(e).__name__}")
            prompt = _text(e, "prompt", where)
            key = "file_path" if "file_path" in e else "image_path"  # train.json says file_path, test.json image_path
            paths = e.get(key)
            if not isinstance(paths, list) or len(paths) < 2:
                raise InputError(f"{where}: '{key}' must be a list of at least 2 paths, got {paths!r}")
            images = [b.find(p, where) for p in paths]
            if any(i is None for i in images):
                continue  # counted under "image not found"
            if "human_preference" in e:
                hp = e["human_preference"]
                if not isinstance(hp, list) or len(hp) != 2 or len(paths) != 2:
                    raise InputError(f"{where}: 'human_preference' must be a list of 2 numbers for 2 images")
                ha, hb = (_number(x, where, "human_preference") for x in hp)
                b.ranked_pairs(prompt, images, [-ha, -hb])  # a larger preference value wins
            else:
                b.ranked_pairs(prompt, images, _hpd_ranks(e, len(paths), where))
        return _finish(b, out, rubric or default_rubric())


# --- Pick-a-Pic ----------------------------------------------------------------------------------
PICKAPIC_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "label_1", "image_0_uid", "image_1_uid",
                    "has_label", "are_different")


def import_pickapic(src, out, split: str | None = None, *, rubric: Rubric | None = None,
                    overwrite: bool = False) -> ImportReport:
    """Pick-a-Pic parquet file(s) (a file, or a directory with split) or rows (dicts) -> pairs-only dataset."""
    files = _source_files(src, split)
    out = _check_out(out, src, overwrite)
    with atomic_dir(out) as tmp:
        b = _Builder(tmp, copy_images=True)
        for where, r in _rows(src, files, PICKAPIC_COLUMNS, "pickapic"):
            if r.get("has_label") is False:
                b.skipped["unlabelled"] += 1
                continue
            if r.get("are_different") is False:
                b.skipped["same image in a pair"] += 1
                continue
            prompt = _text(r, "caption", where)
            l0, l1 = (_number(r.get(c), where, c) for c in ("label_0", "label_1"))
            a = b.blob(r.get("jpg_0"), r.get("image_0_uid"), f"{where} jpg_0")
            c = b.blob(r.get("jpg_1"), r.get("image_1_uid"), f"{where} jpg_1")
            b.ranked_pairs(prompt, [a, c], [-l0, -l1])  # the image labelled 1 won
        return _finish(b, out, rubric or default_rubric())


# --- ImageRewardDB -------------------------------------------------------------------------------
IMAGEREWARD_COLUMNS = ("prompt_id", "prompt", "image_path", "image", "rank", "overall_rating",
                       "image_text_alignment_rating", "fidelity_rating", "classification")


def imagereward_score(rating: float, rubric: Rubric) -> float:
    """A 1..7 ImageRewardDB rating rescaled onto the rubric's range and snapped to its grid."""
    lo, hi = IMAGEREWARD_SCALE
    return rubric.snap(rubric.low + (rating - lo) / (hi - lo) * (rubric.high - rubric.low))


def import_imagerewarddb(src, out, split: str | None = None, *, image_root=None, copy_images: bool = True,
                         skip_missing: bool = False, rubric: Rubric | None = None,
                         overwrite: bool = False) -> ImportReport:
    """ImageRewardDB rows (json / jsonl / parquet file, a directory of them, or dicts) -> points + pairs."""
    rubric = rubric or default_rubric()
    missing = [d for d in IMAGEREWARD_DIMENSIONS.values() if d not in rubric.names]
    if missing:
        raise InputError(f"ImageRewardDB maps its ratings to {list(IMAGEREWARD_DIMENSIONS.values())}; "
                         f"the rubric lacks {missing} (its dimensions are {rubric.names})")
    files = _source_files(src, split)
    out = _check_out(out, src, overwrite)
    if image_root is not None:
        bases = [Path(image_root)]
    elif isinstance(src, (str, Path)):
        s = Path(src).absolute()
        s = s if s.is_dir() else s.parent
        bases = [s, *list(s.parents)[:4]]  # image_path is relative to the dataset root, above the json
    else:
        bases = [Path.cwd()]
    # By file name: below a directory source itself; below the folder a single table file sits in.
    finder = _ImageFinder(bases, bases[0], skip_missing)
    with atomic_dir(out) as tmp:
        b = _Builder(tmp, copy_images, finder)
        groups: dict[str, tuple[str, list[Path], list[float]]] = {}
        seen: set[tuple[Path, str]] = set()
        for where, r in _rows(src, files, IMAGEREWARD_COLUMNS, "imagerewarddb"):
            prompt = _text(r, "prompt", where)
            if r.get("image_path") is None and r.get("image") is not None:
                image = b.blob(r["image"], None, f"{where} image")
            else:
                image = b.find(r.get("image_path"), where)
                if image is None:
                    continue  # counted under "image not found"
            if (image, prompt) in seen:
                b.skipped["duplicate image"] += 1
                continue
            seen.add((image, prompt))
            scores = {}
            for col, dim in IMAGEREWARD_DIMENSIONS.items():
                v = r.get(col)
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                v = _number(v, where, col)
                if not IMAGEREWARD_SCALE[0] <= v <= IMAGEREWARD_SCALE[1]:
                    raise InputError(f"{where}: {col} {v:g} is outside the ImageRewardDB scale 1..7")
                scores[dim] = [imagereward_score(v, rubric)]
            meta = {k: r[k] for k in ("prompt_id", "overall_rating", "rank", "classification") if r.get(k) is not None}
            if scores:
                b.points.append(Point(None, prompt, image, scores, None, {"meta": meta} if meta else {}))
            else:
                b.skipped["no rating (pairs only)"] += 1
            key = str(r.get("prompt_id", prompt))
            group = groups.setdefault(key, (prompt, [], []))
            rank = r.get("rank")
            if rank is None or (isinstance(rank, float) and math.isnan(rank)):
                b.skipped["no rank"] += 1
            else:
                group[1].append(image)
                group[2].append(_number(r["rank"], where, "rank"))
        for prompt, images, ranks in groups.values():
            b.ranked_pairs(prompt, images, ranks)
        return _finish(b, out, rubric)


IMPORTERS = {"hpdv2": import_hpdv2, "pickapic": import_pickapic, "imagerewarddb": import_imagerewarddb}


def import_dataset(kind: str, src, out, **kwargs) -> ImportReport:
    """Runs the importer for `kind` ("hpdv2", "pickapic" or "imagerewarddb")."""
    if kind not in IMPORTERS:
        raise InputError(f"unknown dataset kind {kind!r}; choose one of {sorted(IMPORTERS)}")
    return IMPORTERS[kind](src, out, **kwargs)
