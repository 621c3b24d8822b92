"""The public customer tracking page: one order, reached by a signed link or a lookup."""
