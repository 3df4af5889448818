"""Agentic environments: one interface, tool backends, tau2, BFCL, coding and search."""
