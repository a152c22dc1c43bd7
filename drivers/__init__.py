"""Instrument drivers of the QKD link (real and mock backends behind one protocol per instrument)."""
