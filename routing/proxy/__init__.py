"""The proxy path, stage by stage: handler.py runs them in order."""
