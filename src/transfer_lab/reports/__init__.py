"""Figures and metrics for the reports."""
