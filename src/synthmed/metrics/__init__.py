"""Metrics: plain functions over arrays."""
