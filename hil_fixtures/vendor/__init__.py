"""Fake vendor libraries written from the vendors' API documentation and headers, for the tagger drivers.

- `swabian`: a stand-in for Swabian's `TimeTagger` Python module (user manual, API reference);
- `picoquant`: a stand-in for PicoQuant's MHLib / HHLib (`mhlib.h`, `mhdefin.h`, `hhlib.h`).

They model what the documentation says the library does, including its traps (channel number
schemes, a full stream buffer, dropped-counts flags), so the drivers are tested against the
documented behaviour rather than against their own assumptions.
"""
