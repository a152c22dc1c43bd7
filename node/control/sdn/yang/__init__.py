"""The YANG modules served and validated by the SDN agent (data only)."""
