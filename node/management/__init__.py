"""QKDN management layer (ITU-T Y.3802 FCAPS): alarms with X.733 severities and Prometheus metrics.

`AlarmRegistry` keeps a node's active alarms and their history; `NodeMetrics` holds a node's
Prometheus metrics in its own registry and `serve_metrics` exposes them over HTTP.
"""

from __future__ import annotations

from node.management.alarms import SEVERITIES, Alarm, AlarmEvent, AlarmRegistry
from node.management.metrics import METRICS, NodeMetrics, close_metrics, serve_metrics

__all__ = [
    "METRICS",
    "SEVERITIES",
    "Alarm",
    "AlarmEvent",
    "AlarmRegistry",
    "NodeMetrics",
    "close_metrics",
    "serve_metrics",
]
