"""Strip a ray wheel down to what a headless sweep needs, keeping it a valid wheel.

    python bench/strip_wheel.py IN.whl OUT.whl      # drop ray/jars/ and the dashboard client build
    python bench/strip_wheel.py --check A.whl ...   # every wheel: RECORD lists exactly its files, hashes match

A wheel's ``*.dist-info/RECORD`` lists every file with its sha256 and size; pip refuses (or warns about)
a wheel whose RECORD and contents disagree, so the removed files are removed from RECORD too.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import zipfile

DROP_PREFIXES = ("ray/jars/", "ray/dashboard/client/build/")


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _record_name(names) -> str:
    records = [n for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise SystemExit(f"strip_wheel: expected one .dist-info/RECORD, found {records}")
    return records[0]


def strip(src: str, dst: str, drop=DROP_PREFIXES) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` without the files under ``drop``; returns (files dropped, bytes dropped)."""
    dropped = dropped_bytes = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        record = _record_name(zin.namelist())
        for info in zin.infolist():
            if info.filename == record:
                continue
            if info.filename.startswith(drop):
                dropped += 1
                dropped_bytes += info.file_size
                continue
            zout.writestr(info, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
        rows = [r for r in csv.reader(io.StringIO(zin.read(record).decode())) if r]
        kept = [r for r in rows if not r[0].startswith(drop)]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        zout.writestr(zin.getinfo(record), out.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return dropped, dropped_bytes


def check(path: str) -> list[str]:
    """Problems of one wheel (empty when RECORD and the contents agree)."""
    problems = []
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        record = _record_name(names)
        rows = {r[0]: r for r in csv.reader(io.StringIO(z.read(record).decode())) if r}
        for name in names:
            if name == record:
                continue
            row = rows.get(name)
            if row is None:
                problems.append(f"{path}: {name} is not in RECORD")
                continue
            data = z.read(name)
            if row[1] and row[1] != _digest(data):
                problems.append(f"{path}: {name} hash differs from RECORD")
            if row[2] and int(row[2]) != len(data):
                problems.append(f"{path}: {name} size differs from RECORD")
        for name in rows:
            if name not in names:
                problems.append(f"{path}: RECORD lists {name}, which is not in the wheel")
        bad = z.testzip()
        if bad:
            problems.append(f"{path}: {bad} is corrupt")
    return problems


def main(argv) -> int:
    if argv and argv[0] == "--check":
        problems = [p for w in argv[1:] for p in check(w)]
        for p in problems[:20]:
            print(p, file=sys.stderr)
        print(f"strip_wheel: {len(argv) - 1} wheels checked, {len(problems)} problems")
        return 1 if problems else 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n, size = strip(argv[0], argv[1])
    print(f"strip_wheel: {argv[1]}: dropped {n} files ({size / 2**20:.1f} MiB uncompressed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
