"""Runs, the results store and reports."""
