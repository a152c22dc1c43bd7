"""Live time-tagger backends streaming `TagBlock`s; vendor libraries are imported only when a tagger opens.

- `picoquant_live.PicoQuantTagger`: MultiHarp / HydraHarp through MHLib / HHLib (cffi ABI mode);
- `swabian.SwabianTagger`: Swabian Time Tagger through its `TimeTagger` Python module;
- `idq.IDQTimeController`: ID Quantique ID1000 (SCPI over ZeroMQ, timestamp streams over TCP).
"""

from __future__ import annotations
