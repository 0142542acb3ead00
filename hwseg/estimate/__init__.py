"""Analytic estimates: resources and cycles per layer, fps and board utilization."""

from .network import LayerEstimate, NetworkEstimate, estimate_graph
from .report import report_dict, report_markdown, report_table

__all__ = ["LayerEstimate", "NetworkEstimate", "estimate_graph", "report_dict", "report_markdown", "report_table"]
