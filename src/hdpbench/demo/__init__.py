"""The embedded demo: a small reference dataset computed with GFN1-xTB, and demo models."""
