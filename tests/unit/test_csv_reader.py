"""The streaming CSV reader: encodings, delimiters, records across chunk boundaries, limits."""

from __future__ import annotations

import codecs

import pytest

from orderdesk.imports import reader
from orderdesk.imports.csv_format import header_score
from orderdesk.imports.reader import CsvUpload, FileRefused, ReadingStopped

HEADER = "external_ref,customer_name,sku,quantity"


async def chunked(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(data: bytes, *, size: int = 7, **options) -> tuple[CsvUpload, list[str], list]:
    upload = CsvUpload(chunked(data, size), header_score=header_score, **options)
    header = await upload.read_header()
    records = [r async for batch in upload.record_batches() for r in batch]
    return upload, header, records


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 100_000])
async def test_records_do_not_depend_on_how_the_body_is_chunked(size):
    text = (
        f"{HEADER}\r\n"
        'A-1,"Zoë ""Z"" Ørsted",TENT,2\r\n'
        'A-1,"line one\r\nline two, still the name",MAT,1\n'
        "A-2,€uro,CUP,3"  # no final line break
    )
    upload, header, records = await read_all(text.encode(), size=size)
    assert header == ["external_ref", "customer_name", "sku", "quantity"]
    assert [(r.number, r.fields) for r in records] == [
        (2, ["A-1", 'Zoë "Z" Ørsted', "TENT", "2"]),
        (3, ["A-1", "line one\r\nline two, still the name", "MAT", "1"]),
        (4, ["A-2", "€uro", "CUP", "3"]),
    ]
    assert (upload.encoding, upload.delimiter, upload.bytes_read) == ("utf-8", ",", len(text.encode()))


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (codecs.BOM_UTF8 + f"{HEADER}\nA,Zoë,S,1\n".encode(), "utf-8-sig"),
        (f"{HEADER}\nA,Zoë,S,1\n".encode("cp1252"), "cp1252"),
        (f"{HEADER}\nA,Zoë,S,1\n".encode("utf-16"), "utf-16"),
        (f"{HEADER}\nA,Zoë,S,1\n".encode(), "utf-8"),
    ],
)
async def test_encoding_is_detected(data, encoding):
    upload, header, records = await read_all(data)
    assert upload.encoding == encoding
    assert header[0] == "external_ref"  # no BOM left on the first column name
    assert records[0].fields == ["A", "Zoë", "S", "1"]


def test_a_character_cut_at_the_end_of_the_probe_is_still_utf8():
    data = "é".encode() * 10
    assert reader.detect_encoding(data[:-1], complete=False) == "utf-8"
    assert reader.detect_encoding(data[:-1], complete=True) == "cp1252"


async def test_undecodable_bytes_become_replacement_characters_not_errors():
    data = f"{HEADER}\nA,Ren\xe9,S,1\n".encode("cp1252")
    _, _, records = await read_all(data, encoding="utf-8")
    assert records[0].fields[1] == "Ren\ufffd"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
async def test_delimiter_is_chosen_by_the_known_column_names(delimiter):
    # A quoted comma in a semicolon header would fool a character count.
    header = delimiter.join(["external_ref", '"customer_name, full"', "sku", "quantity"])
    upload, _, records = await read_all(f"{header}\nA{delimiter}B{delimiter}C{delimiter}1\n".encode())
    assert upload.delimiter == delimiter
    assert records[0].fields == ["A", "B", "C", "1"]


async def test_an_explicit_delimiter_wins():
    upload, fields, _ = await read_all(f"{HEADER}\nA,B,C,1\n".encode(), delimiter=";")
    assert upload.delimiter == ";" and fields == [HEADER]


async def test_carriage_return_line_ends_are_read():
    _, header, records = await read_all(f"{HEADER}\rA,B,C,1\rA,B,D,2\r".encode())
    assert len(header) == 4 and [r.fields[2] for r in records] == ["C", "D"]


async def test_blank_lines_keep_their_row_numbers():
    _, _, records = await read_all(f"{HEADER}\n\nA,B,C,1\n".encode())
    assert [(r.number, r.fields) for r in records] == [(2, []), (3, ["A", "B", "C", "1"])]


async def test_empty_file_and_empty_first_row_are_refused():
    with pytest.raises(FileRefused, match="The file is empty"):
        await read_all(b"")
    with pytest.raises(FileRefused, match="The first row is empty"):
        await read_all(b"\n" + HEADER.encode())


async def test_a_field_over_the_csv_limit_is_a_row_error_and_reading_goes_on():
    data = f'{HEADER}\nA,"{"x" * 200_000}",S,1\nB,ok,S,1\n'.encode()
    _, _, records = await read_all(data, size=65536)
    assert records[0].fields is None and "field larger than field limit" in records[0].error
    assert records[-1].fields == ["B", "ok", "S", "1"]


async def test_an_endless_line_stops_reading_instead_of_filling_memory():
    data = HEADER.encode() + b"\n" + b"x" * (reader.MAX_RECORD_CHARS + 10)
    upload = CsvUpload(chunked(data, 65536), header_score=header_score)
    await upload.read_header()
    with pytest.raises(ReadingStopped, match="without a line break"):
        async for _ in upload.record_batches():
            pass


async def test_an_unclosed_quote_is_a_row_error_at_the_field_limit():
    data = f'{HEADER}\nA,"never closed,S,1\n'.encode() + b"more,lines,S,1\n" * 20_000
    _, _, records = await read_all(data, size=65536)
    assert records[0].fields is None and "field larger than field limit" in records[0].error


async def test_a_record_over_the_record_limit_stops_reading():
    big_field = '"' + ("y" * 99 + "\n") * 1200 + '"'  # 120 KB, under the csv field limit
    data = f"{HEADER}\nA," + ",".join([big_field] * 10) + "\n"  # 1.2 MB in one record
    upload = CsvUpload(chunked((data + data).encode(), 65536), header_score=header_score)
    await upload.read_header()
    with pytest.raises(ReadingStopped, match="longer than 1024 KiB"):
        async for _ in upload.record_batches():
            pass


def test_requested_encodings_and_delimiters_are_normalised():
    assert reader.normalise_encoding("Windows-1252") == "cp1252"
    assert reader.normalise_encoding("UTF_8") == "utf-8"
    with pytest.raises(ValueError, match="must be one of"):
        reader.normalise_encoding("rot13")
    assert reader.normalise_delimiter("tab") == "\t"
    assert reader.normalise_delimiter(";") == ";"
    with pytest.raises(ValueError):
        reader.normalise_delimiter("|")
