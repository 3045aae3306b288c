"""Completeness report of the exploration loop over iterations."""
