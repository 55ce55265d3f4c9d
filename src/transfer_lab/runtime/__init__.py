"""How the work runs: cluster (TF_CONFIG), distribution strategy and precision, devices, quiet libraries."""
