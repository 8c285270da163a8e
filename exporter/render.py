"""Serialise one cycle's metric families once, for both exposition formats, and keep only the gzip bytes.

Scale drives the design: 10,000 pipelines make ~1.3 M series, ~160 MB of text. Holding that (twice: text 0.0.4
and OpenMetrics) would cost far more memory than the rest of the exporter, so samples are deflated while they
are written: the metric layer's builder writes each family's sample lines into a :class:`FamilyWriter` (its
:class:`~exporter.metrics.spec.FamilySink`), which encodes and compresses them in batches of :data:`BATCH_LINES`
and ends as one raw-deflate segment (:class:`Family`); batching and spilling are decided here only. The two
formats differ only in the ``# HELP``/``# TYPE`` lines (OpenMetrics names a counter family without ``_total``)
and OpenMetrics' closing ``# EOF``, so both gzip bodies are stitched from the *same* sample segments with small
per-format header blocks; the gzip trailer's CRC is combined from the parts (:func:`crc32_combine`), never
recomputed over the text.

``/metrics`` never renders: it serves the gzip bytes of the latest :class:`Rendered`, or inflates them in
chunks for a client that does not accept gzip. The poll loop replaces the :class:`Rendered` as a whole after
each cycle, so a scrape sees one cycle or the next, never a mix.

The output is what prometheus_client's ``generate_latest`` writes for the same families (the golden tests parse
it back and compare), except that labels come in declaration order rather than sorted, which the formats allow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from exporter.promclient import OPENMETRICS_CONTENT_TYPE

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = OPENMETRICS_CONTENT_TYPE
GZIP_LEVEL = 3
"""Measured on a 226 MB exposition (10,000 pipelines): level 1 0.49 s / 5.56 MB, level 3 0.54 s / 5.14 MB,
level 6 1.68 s / 4.81 MB. Every series is compressed every cycle, so the fast end wins."""
BATCH_LINES = 512
"""Lines a :class:`FamilyWriter` buffers as strings before encoding and deflating them."""
PIECE = 1 << 16
"""Bytes of gzip output small parts are joined into (large ones are kept as they are, shared with their part)."""
PLAIN_CHUNK = 1 << 14
"""Compressed bytes inflated per step when serving a client without gzip (about 1 MB of text)."""

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, no mtime, OS unknown
_FINAL_BLOCK = b"\x03\x00"  # an empty, final, fixed-Huffman deflate block (what zlib writes on Z_FINISH)
_EOF = b"# EOF\n"


# ---- gzip from parts -----------------------------------------------------------------------------------------

_CRC_POLY = 0xEDB88320  # CRC-32 (gzip), reflected


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial (reflected bit order), as in zlib's crc32.c."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> tuple[int, ...]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return tuple(table)


_X2N = _x2n_table()
"""``x^(2^k) mod p`` for k = 0..31."""


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's crc32_combine)."""
    if len2 <= 0:
        return crc1
    op, k, n = 1 << 31, 3, len2  # x^(8 * len2) mod p
    while n:
        if n & 1:
            op = _multmodp(_X2N[k & 31], op)
        n >>= 1
        k += 1
    return _multmodp(op, crc1) ^ crc2


@dataclass(frozen=True, slots=True)
class _Part:
    """Bytes in a deflate stream (byte-aligned, non-final blocks) plus what they inflate to: CRC and length."""

    deflated: bytes
    crc: int
    size: int


def _stored(data: bytes) -> _Part:
    """Uncompressed ("stored") deflate blocks holding ``data``; for the small header lines."""
    blocks = []
    for start in range(0, len(data), 0xFFFF):
        chunk = data[start : start + 0xFFFF]
        blocks.append(b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk)
    return _Part(b"".join(blocks), zlib.crc32(data), len(data))


class _Gzip(NamedTuple):
    """One gzip member as the bytes of its pieces, in order (never joined: the deflate segments are the families'
    own bytes, shared with the parts they came from)."""

    chunks: tuple[bytes, ...]
    size: int
    """Bytes of the member (the sum of the chunks)."""
    plain_size: int
    """Bytes it inflates to."""


def _gzip(parts: Iterable[_Part]) -> _Gzip:
    """One gzip member from deflate parts; runs of small ones (headers, a small family's samples) are joined into
    pieces of up to :data:`PIECE` bytes, so a scrape writes a few pieces rather than one per family and part."""
    out: list[bytes] = []
    run: list[bytes] = [_GZIP_HEADER]
    running = len(_GZIP_HEADER)
    crc = size = 0
    for part in parts:
        if not part.size:
            continue
        crc = crc32_combine(crc, part.crc, part.size)
        size += part.size
        if len(part.deflated) >= PIECE:
            out += [b"".join(run), part.deflated] if run else [part.deflated]
            run, running = [], 0
            continue
        if running + len(part.deflated) > PIECE:
            out.append(b"".join(run))
            run, running = [], 0
        run.append(part.deflated)
        running += len(part.deflated)
    run += [_FINAL_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)]
    out.append(b"".join(run))
    return _Gzip(tuple(out), sum(map(len, out)), size)


# ---- families ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Family:
    """One finished metric family: its metadata and its samples as one deflate segment."""

    name: str
    """The family name (a counter's without ``_total``), as in OpenMetrics and prometheus_client."""
    type: str
    help: str
    samples: int
    body: _Part

    def headers(self, *, openmetrics: bool) -> bytes:
        if openmetrics:
            help_text = self.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            return f"# HELP {self.name} {help_text}\n# TYPE {self.name} {self.type}\n".encode()
        name = f"{self.name}_total" if self.type == "counter" else self.name
        help_text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {name} {help_text}\n# TYPE {name} {self.type}\n".encode()


_EMPTY = _Part(b"", 0, 0)


class FamilyWriter:
    """The exporter's :class:`~exporter.metrics.spec.FamilySink`: collects the sample lines of one family and
    encodes and deflates them every :data:`BATCH_LINES`; :meth:`finish` flushes the rest and returns the
    :class:`Family`."""

    __slots__ = ("_crc", "_deflated", "_lines", "_size", "_zlib", "count", "help", "name", "type")

    def __init__(self, name: str, type_: str, help_: str) -> None:
        self.name, self.type, self.help = name, type_, help_
        self._lines: list[str] = []
        self.count = 0
        self._zlib: zlib._Compress | None = None
        self._deflated: list[bytes] = []
        self._crc = 0
        self._size = 0

    def append(self, line: str) -> None:
        """Add one complete line (``name{labels} value\\n``)."""
        lines = self._lines
        lines.append(line)
        if len(lines) >= BATCH_LINES:
            self._spill()

    def extend(self, lines: list[str]) -> None:
        """Add complete lines, in order."""
        self._lines += lines
        if len(self._lines) >= BATCH_LINES:
            self._spill()

    def _spill(self) -> None:
        if not self._lines:
            return
        data = "".join(self._lines).encode()
        self.count += len(self._lines)
        self._lines.clear()
        if self._zlib is None:
            self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._deflated.append(self._zlib.compress(data))

    def finish(self) -> Family:
        self._spill()
        body = _EMPTY
        if self._zlib is not None:
            self._deflated.append(self._zlib.flush(zlib.Z_SYNC_FLUSH))
            body = _Part(b"".join(self._deflated), self._crc, self._size)
            self._zlib, self._deflated = None, []
        return Family(self.name, self.type, self.help, self.count, body)


# ---- the served result ---------------------------------------------------------------------------------------


class Rendered:
    """Exposition of one cycle, or of the latest parts of several (the exporter's own families and each target's,
    polled on their own cadences): text 0.0.4 and OpenMetrics 1.0, each held gzip-compressed only.

    Parts are merged by family: each family's headers once, then its samples from each part in the order given, as
    the parts' own deflate segments (no sample is compressed again). A family two parts both declare has the
    headers of the first."""

    def __init__(self, *parts: Iterable[Family]) -> None:
        merged: dict[str, tuple[Family, list[_Part]]] = {}
        self.series = 0
        for part in parts:
            for family in part:
                self.series += family.samples
                found = merged.get(family.name)
                if found is None:
                    merged[family.name] = (family, [family.body])
                else:
                    found[1].append(family.body)
        text_parts, om_parts = [], []
        for name in sorted(merged):
            family, bodies = merged[name]
            text_parts += [_stored(family.headers(openmetrics=False)), *bodies]
            om_parts += [_stored(family.headers(openmetrics=True)), *bodies]
        om_parts.append(_stored(_EOF))
        self._gzipped: dict[bool, _Gzip] = {False: _gzip(text_parts), True: _gzip(om_parts)}

    def gzip_chunks(self, *, openmetrics: bool) -> tuple[bytes, ...]:
        """The gzip-compressed exposition, as pieces to write one after the other."""
        return self._gzipped[openmetrics].chunks

    def gzip_size(self, *, openmetrics: bool) -> int:
        return self._gzipped[openmetrics].size

    def plain_size(self, *, openmetrics: bool) -> int:
        return self._gzipped[openmetrics].plain_size

    def plain_chunks(self, *, openmetrics: bool) -> Iterator[bytes]:
        """The uncompressed exposition, inflated a piece at a time (about 1 MB per chunk at fleet scale)."""
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for body in self.gzip_chunks(openmetrics=openmetrics):
            for start in range(0, len(body), PLAIN_CHUNK):
                chunk = inflater.decompress(body[start : start + PLAIN_CHUNK])
                if chunk:
                    yield chunk
        tail = inflater.flush()
        if tail:
            yield tail

    @staticmethod
    def content_type(*, openmetrics: bool) -> str:
        return OPENMETRICS_TYPE if openmetrics else TEXT_CONTENT_TYPE


def render(families: Iterable[Family]) -> Rendered:
    return Rendered(families)
