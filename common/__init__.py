"""The bottom layer: tiny helpers every package may use (it imports no other package of ours)."""
