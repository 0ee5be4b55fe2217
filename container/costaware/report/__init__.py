"""The HTML training report and its charts."""
