"""Model families: the boundary between stages and one kind of VLM (see base.py)."""
