"""Serving: photo bytes -> decoder -> classifier -> label + unfamiliar flag (predictor), and the
MLflow pyfunc model that wraps it (pyfunc)."""
