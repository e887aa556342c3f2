"""Data sources (scikit-learn, synthetic, csv, OpenML) and dataset transforms."""
