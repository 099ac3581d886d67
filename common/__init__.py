"""Plain-Python pieces that both sides import: the hub's web processes (which never load torch)
and the libraries (compress, evals, engine, which never load Django). No torch, no Django here."""
