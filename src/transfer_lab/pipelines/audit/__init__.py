"""audit: near-duplicates across splits, likely label errors and outliers, from the cached features."""
