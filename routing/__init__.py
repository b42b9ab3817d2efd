"""Unit directory, routing rules, jurisdiction and transfer."""
