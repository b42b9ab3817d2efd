"""The domain: case lifecycle, deadlines, evidence."""
