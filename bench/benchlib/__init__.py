"""Helpers of bunsan's benchmark orchestrator (bench/orchestrate.py)."""
