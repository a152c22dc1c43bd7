"""PicoQuant time-tagger files and streams: the PTU container, the T2/T3 record formats of the
PicoHarp 300, HydraHarp v1/v2, TimeHarp 260 N/P and MultiHarp, and chunked decoding into `TagBlock`s."""

from __future__ import annotations

from drivers.picoquant.ptu import PtuHeader, Tag, TagType, encode_header, parse_header, read_header
from drivers.picoquant.records import (
    COMPATIBLE_OVERFLOW_COUNT,
    SYNC_CHANNEL,
    RecordType,
    decode_t2,
    decode_t2_chunks,
    decode_t3,
    decode_t3_chunks,
    encode_t2,
    encode_t3,
)
from drivers.picoquant.stream import RecordStream, iter_tag_blocks
from drivers.picoquant.tttr import Markers, Measurement, PtuData, read_ptu, write_ptu, write_t2, write_t3

__all__ = [
    "COMPATIBLE_OVERFLOW_COUNT",
    "SYNC_CHANNEL",
    "Markers",
    "Measurement",
    "PtuData",
    "PtuHeader",
    "RecordStream",
    "RecordType",
    "Tag",
    "TagType",
    "decode_t2",
    "decode_t2_chunks",
    "decode_t3",
    "decode_t3_chunks",
    "encode_header",
    "encode_t2",
    "encode_t3",
    "iter_tag_blocks",
    "parse_header",
    "read_header",
    "read_ptu",
    "write_ptu",
    "write_t2",
    "write_t3",
]
