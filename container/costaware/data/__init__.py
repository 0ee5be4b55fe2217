"""Data: reading channel files (CSV, Parquet) into datasets."""
