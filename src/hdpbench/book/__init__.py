"""Book layer: executes the section notebooks (``python -m hdpbench.book``) and holds the tables,
figures and page helpers they call."""
