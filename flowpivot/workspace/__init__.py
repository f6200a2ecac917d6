"""The analyst's workspace: a folder holding saved investigations (and what ``flowpivot serve`` keeps)."""
