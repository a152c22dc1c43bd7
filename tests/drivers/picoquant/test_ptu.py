"""The PTU tag container: round trips of every tag type, agreement with ptufile, malformed headers."""

from __future__ import annotations

import io
import math
import struct
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import FormatError
from drivers.picoquant.ptu import PTU_MAGIC, Tag, TagType, encode_header, parse_header, tags_from_mapping

PTU_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ptu"
REAL_FILES = sorted(PTU_DIR.glob("*.ptu"))

_ansi = st.text(st.characters(codec="cp1252", exclude_characters="\0"), max_size=40)
_wide = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40)
_dates = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1))
_values = {
    TagType.EMPTY8: st.none(),
    TagType.BOOL8: st.booleans(),
    TagType.INT8: st.integers(-(2**63), 2**63 - 1),
    TagType.BITSET64: st.integers(-(2**63), 2**63 - 1),
    TagType.COLOR8: st.integers(-(2**63), 2**63 - 1),
    TagType.FLOAT8: st.floats(allow_nan=False),
    TagType.TDATETIME: _dates,
    TagType.FLOAT8_ARRAY: st.lists(st.floats(allow_nan=False), max_size=8).map(tuple),
    TagType.ANSI_STRING: _ansi,
    TagType.WIDE_STRING: _wide,
    TagType.BINARY_BLOB: st.binary(max_size=5).map(lambda b: b * 8),  # blobs are stored padded to 8 bytes
}


@st.composite
def tags(draw):
    ttype = draw(st.sampled_from(list(TagType)))
    ident = draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=31))
    if ident == "Header_End":
        ident = "Header_End_"
    return Tag(ident, draw(st.integers(-1, 1000)), ttype, draw(_values[ttype]))


def _same_value(a, b) -> bool:
    if isinstance(a, datetime):
        return abs(a - b) <= timedelta(microseconds=1)  # TDateTime is a float of days
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@given(st.lists(tags(), max_size=12))
def test_every_tag_type_round_trips_through_the_header(tag_list):
    header = parse_header(encode_header(tag_list) + b"records")
    assert [(t.ident, t.index, t.type) for t in header.tags] == [(t.ident, t.index, t.type) for t in tag_list]
    assert all(_same_value(a.value, b.value) for a, b in zip(tag_list, header.tags))
    assert all(t.offset % 8 == 0 for t in header.tags)
    assert encode_header(tag_list)[header.data_offset - 48 :].startswith(b"Header_End")


def test_header_dict_keeps_indexed_tags_at_their_index():
    header = parse_header(
        encode_header(
            [Tag("Usr", 1, TagType.INT8, 7), Tag("Usr", 3, TagType.INT8, 9), Tag("X", -1, TagType.BOOL8, True)]
        )
    )
    assert header.as_dict() == {"Usr": [None, 7, None, 9], "X": True}


def test_types_are_inferred_from_python_values():
    found = {
        t.ident: t.type
        for t in tags_from_mapping({"a": True, "b": 3, "c": 1.5, "d": "x", "e": "Ω", "f": b"z", "g": None})
    }
    assert found == {
        "a": TagType.BOOL8,
        "b": TagType.INT8,
        "c": TagType.FLOAT8,
        "d": TagType.ANSI_STRING,
        "e": TagType.WIDE_STRING,
        "f": TagType.BINARY_BLOB,
        "g": TagType.EMPTY8,
    }
    with pytest.raises(ValueError, match="cannot infer"):
        tags_from_mapping({"h": object()})


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_headers_read_like_ptufile(path):
    import ptufile

    with open(path, "rb") as fh:
        data = fh.read()
    ours = parse_header(data).as_dict()
    with ptufile.PtuFile(path) as f:
        theirs = f.tags
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(mine, list):
            mine = [v for v in mine if v is not None]  # ptufile packs sparse indices together
        assert mine == value, key


@given(st.lists(tags().filter(lambda t: t.type not in (TagType.COLOR8, TagType.FLOAT8_ARRAY)), max_size=10))
def test_ptufile_reads_our_headers(tag_list):
    import ptufile

    tag_list = [Tag(f"T{i}_{t.ident}"[:31], -1, t.type, t.value) for i, t in enumerate(tag_list)]
    with ptufile.PqFile(io.BytesIO(encode_header(tag_list))) as f:
        theirs = f.tags
    for t in tag_list:
        value = theirs[t.ident]
        if t.type == TagType.ANSI_STRING:
            assert value == t.value.rstrip("\0")
        elif t.type == TagType.TDATETIME:
            assert abs(value - t.value) <= timedelta(microseconds=1)
        else:
            assert value == t.value


# --- malformed headers ----------------------------------------------------------------------------


def _header() -> bytes:
    return encode_header(
        [
            Tag("File_Comment", -1, TagType.ANSI_STRING, "a comment"),
            Tag("Blob", -1, TagType.BINARY_BLOB, bytes(16)),
            Tag("TTResult_NumberOfRecords", -1, TagType.INT8, 0),
        ]
    )


def test_wrong_magic_names_offset_zero():
    with pytest.raises(FormatError, match=r"wrong magic .* byte offset 0"):
        parse_header(b"PQHISTO\0" + _header()[8:])


@pytest.mark.parametrize("cut", [0, 7, 15, 16, 40, 63, 64, 80, 100, 200])
def test_truncated_header_names_where_it_ends(cut):
    data = _header()[:cut]
    with pytest.raises(FormatError, match=rf"byte offset {cut}\b|ends at byte offset 16"):
        parse_header(data)


def test_every_truncation_of_a_header_is_a_format_error():
    data = _header()
    for cut in range(len(data)):
        with pytest.raises(FormatError, match="byte offset"):
            parse_header(data[:cut])


def test_unknown_tag_type_names_the_tag_offset():
    data = bytearray(_header())
    struct.pack_into("<I", data, 16 + 36, 0x12345678)
    with pytest.raises(FormatError, match=r"'File_Comment' at byte offset 16 has unknown type code 0x12345678"):
        parse_header(bytes(data))


@pytest.mark.parametrize("length", [1 << 40, 2**63 - 1])
def test_string_length_past_the_end_names_the_offset(length):
    data = bytearray(_header())
    struct.pack_into("<q", data, 16 + 40, length)
    with pytest.raises(FormatError, match=r"byte offset 64 needs \d+ bytes but the file ends at byte offset"):
        parse_header(bytes(data))


def test_negative_length_is_a_format_error():
    data = bytearray(_header())
    struct.pack_into("<q", data, 16 + 40, -8)
    with pytest.raises(FormatError, match=r"'File_Comment' at byte offset 16: negative data length"):
        parse_header(bytes(data))


def test_missing_header_end_is_a_format_error():
    data = _header()
    with pytest.raises(FormatError, match="byte offset"):
        parse_header(data[: len(data) - 48])


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_header_parser(data):
    for blob in (data, PTU_MAGIC + data):
        try:
            parse_header(blob)
        except FormatError:
            pass


@given(st.data())
def test_bit_flips_in_a_header_give_a_header_or_a_format_error(data):
    raw = bytearray(REAL_FILES[0].read_bytes()[:6000] if REAL_FILES else _header())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        header = parse_header(bytes(raw))
    except FormatError as exc:  # either outcome is allowed; pytest.raises cannot say that
        assert "byte offset" in str(exc)  # noqa: PT017
    else:
        assert header.data_offset <= len(raw)


def test_writer_rejects_bad_tags():
    with pytest.raises(ValueError, match=r"1..31 ASCII"):
        encode_header([Tag("x" * 32, -1, TagType.INT8, 1)])
    with pytest.raises(ValueError, match="index must be"):
        encode_header([Tag("x", -2, TagType.INT8, 1)])
    with pytest.raises(ValueError, match="TDateTime value must be a datetime"):
        encode_header([Tag("x", -1, TagType.TDATETIME, 1.0)])
