"""Reading a CSV upload as it arrives: bytes → text → records, in constant memory.

Nothing here holds more than one chunk of the body, the lines not yet parsed and
the record being parsed. The encoding is decided from the first 64 KiB (a byte
order mark, else strict UTF-8, else Windows-1252), the delimiter from the header
row. Records are numbered as a spreadsheet numbers rows: the header is row 1, and
a quoted value with line breaks inside stays within its row.

The standard `csv` module does the parsing. It pulls lines from an iterator that
may run dry before more of the body has arrived; the record in progress is then
parsed again from its first line once the next chunk is in (`_LineFeed`).
"""

from __future__ import annotations

import codecs
import csv
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

PROBE_BYTES = 64 * 1024
# One record, quoted line breaks included. An unclosed quote stops here, not at 2 GiB.
MAX_RECORD_CHARS = 1024 * 1024
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
# Encodings a caller may ask for. Names are Python codec names as reported back.
ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso-8859-15": "iso8859-15",
    "utf-16": "utf-16",
}
REPLACEMENT = "\ufffd"


class FileRefused(Exception):
    """The file cannot be read at all (empty, not text, no usable header): nothing is imported."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReadingStopped(Exception):
    """The file cannot be read past a point; the rows before it have been handled."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(slots=True)
class Record:
    number: int  # row number as a spreadsheet shows it; the header is row 1
    fields: list[str] | None  # None when the row could not be parsed (see `error`)
    error: str | None = None


def normalise_encoding(name: str) -> str:
    """The codec for a requested encoding name. Raises ValueError naming the accepted ones."""
    codec = ENCODINGS.get(name.strip().lower().replace("_", "-"))
    if codec is None:
        raise ValueError(f"must be one of: {', '.join(sorted(set(ENCODINGS.values())))}")
    return codec


def normalise_delimiter(name: str) -> str:
    """`,` `;` or tab, also given as comma/semicolon/tab. Raises ValueError otherwise."""
    value = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t"}.get(name.strip().lower(), name)
    if value not in DELIMITERS:
        raise ValueError("must be a comma, a semicolon or a tab (comma, semicolon, tab)")
    return value


def detect_encoding(probe: bytes, *, complete: bool) -> str:
    """The codec for a file that starts with `probe` (`complete` when that is the whole file)."""
    if probe.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if probe.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # Incremental, so a character cut at the end of the probe is not an error.
        codecs.getincrementaldecoder("utf-8")("strict").decode(probe, final=complete)
    except UnicodeDecodeError:
        # Not UTF-8: spreadsheets on Windows save "CSV" in the ANSI code page, which in
        # Western Europe and the Americas is Windows-1252, a superset of Latin-1's letters.
        return "cp1252"
    return "utf-8"


class _NeedMore(Exception):
    """The line feed ran dry before the end of the body."""


class _LineFeed:
    """The csv reader's line source: lines as they arrive, and the record being parsed.

    A plain class rather than a generator: a generator that raised is finished, and
    this one must resume after `_NeedMore`.
    """

    __slots__ = ("eof", "lines", "taken", "taken_chars")

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.taken: list[str] = []  # lines of the record being parsed
        self.taken_chars = 0
        self.eof = False

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.lines:
            line = self.lines.popleft()
            self.taken.append(line)
            self.taken_chars += len(line)
            return line
        if self.eof:
            raise StopIteration
        raise _NeedMore

    def record_done(self) -> None:
        self.taken.clear()
        self.taken_chars = 0

    def rewind(self) -> None:
        """Put the unfinished record's lines back, to be parsed again with more data."""
        self.lines.extendleft(reversed(self.taken))
        self.record_done()


class CsvUpload:
    """Records of a CSV body that arrives as an async stream of byte chunks.

    Call `read_header()` once, then iterate `record_batches()`. `bytes_read`, the
    chosen `encoding` and `delimiter` can be read at any time after the header.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        header_score: Callable[[list[str]], int] = len,
    ) -> None:
        self._chunks = chunks
        self._requested_encoding = encoding
        self._requested_delimiter = delimiter
        self._header_score = header_score
        self._decoder: codecs.IncrementalDecoder | None = None
        self._partial = ""  # text after the last line break
        self._carriage_returns_only = False
        self._feed = _LineFeed()
        self._reader = None
        self._row = 0
        self._body_done = False
        self.bytes_read = 0
        self.encoding: str | None = None
        self.delimiter: str | None = None

    # ------------------------------------------------------------ bytes and text

    async def _next_chunk(self) -> bytes | None:
        while not self._body_done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._body_done = True
                return None
            if chunk:
                self.bytes_read += len(chunk)
                return chunk
        return None

    def _add_text(self, text: str) -> None:
        if not text:
            return
        if self._carriage_returns_only:
            text = text.replace("\r", "\n")
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self._feed.lines.extend([part + "\n" for part in parts])

    def _end_of_text(self) -> None:
        self._add_text(self._decoder.decode(b"", final=True))
        if self._partial:
            self._feed.lines.append(self._partial)
            self._partial = ""
        self._feed.eof = True

    async def _read_more(self) -> bool:
        """Decode the next chunk into lines. False at the end of the body.

        Called when every complete line has been parsed, so a long unfinished line is
        the next row, and the most held is that row plus one chunk.
        """
        if len(self._partial) > MAX_RECORD_CHARS:
            raise ReadingStopped(
                f"Row {self._row + 1} runs for more than {MAX_RECORD_CHARS // 1024} KiB without a line "
                "break; the rest of the file was not read"
            )
        chunk = await self._next_chunk()
        if chunk is None:
            self._end_of_text()
            return False
        self._add_text(self._decoder.decode(chunk))
        return True

    # ------------------------------------------------------------ header

    async def read_header(self) -> list[str]:
        """Decide encoding and delimiter; return the header row's fields.

        Raises FileRefused for an empty file, a first row that is empty or a
        header that no delimiter splits into known columns.
        """
        probe = bytearray()
        while len(probe) < PROBE_BYTES:
            chunk = await self._next_chunk()
            if chunk is None:
                break
            probe += chunk
        if not probe:
            raise FileRefused("The file is empty: expected a header row and at least one order row")
        complete = self._body_done
        # From exactly the first 64 KiB, however the body happens to arrive in chunks.
        head = bytes(probe[:PROBE_BYTES])
        self.encoding = self._requested_encoding or detect_encoding(
            head, complete=complete and len(probe) <= PROBE_BYTES
        )
        if self.encoding == "utf-8" and probe.startswith(codecs.BOM_UTF8):
            self.encoding = "utf-8-sig"
        self._decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        text = self._decoder.decode(bytes(probe), final=False)
        del probe
        if "\n" not in text and "\r" in text:
            # Classic Mac line ends; quoted breaks inside values are carriage returns too.
            self._carriage_returns_only = True
        self._add_text(text)
        if complete:
            self._end_of_text()
        first_line = self._feed.lines[0] if self._feed.lines else self._partial
        if not first_line.strip():
            raise FileRefused("The first row is empty; it must be the header row naming the columns")
        self.delimiter = self._requested_delimiter or self._guess_delimiter(first_line)
        self._reader = csv.reader(self._feed, delimiter=self.delimiter, quotechar='"', doublequote=True)
        header = await self._next_record()
        if header is None or header.fields is None:
            raise FileRefused(
                "The header row could not be read" + (f": {header.error}" if header and header.error else "")
            )
        return header.fields

    def _guess_delimiter(self, first_line: str) -> str:
        """The delimiter that splits the header into the most known column names.

        Known names are a surer sign than csv.Sniffer's character counts, which a
        header with a quoted comma or a single column fools.
        """
        best, best_score = DELIMITERS[0], -1
        for delimiter in DELIMITERS:
            fields = next(csv.reader([first_line], delimiter=delimiter), [])
            score = self._header_score(fields)
            if score > best_score:
                best, best_score = delimiter, score
        return best

    # ------------------------------------------------------------ records

    async def _next_record(self) -> Record | None:
        while True:
            batch = self._parse_available(limit=1)
            if batch:
                return batch[0]
            if self._feed.eof:
                return None
            await self._read_more()

    def _parse_available(self, limit: int | None = None) -> list[Record]:
        """Every record whose lines are all in; stops early at `limit` records."""
        records: list[Record] = []
        reader, feed = self._reader, self._feed
        while limit is None or len(records) < limit:
            try:
                fields = next(reader)
            except _NeedMore:
                if feed.taken_chars > MAX_RECORD_CHARS:
                    raise ReadingStopped(
                        f"Row {self._row + 1} is longer than {MAX_RECORD_CHARS // 1024} KiB (an unclosed "
                        "quote?); the rest of the file was not read"
                    ) from None
                feed.rewind()
                break
            except StopIteration:
                break
            except csv.Error as exc:
                feed.record_done()
                self._row += 1
                records.append(Record(self._row, None, f"could not be read as CSV ({exc})"))
                continue
            feed.record_done()
            self._row += 1
            records.append(Record(self._row, fields))
        return records

    async def record_batches(self) -> AsyncIterator[list[Record]]:
        """The records after the header, in batches of what each chunk completed."""
        while True:
            records = self._parse_available()
            if records:
                yield records
            if self._feed.eof:
                return
            await self._read_more()

    async def drain(self) -> None:
        """Read the rest of the body without keeping it, so the client can finish sending."""
        while await self._next_chunk() is not None:
            pass
