"""The ``feature_extraction`` parameters (conf/base/parameters_*.yml). To be written: one Params model registered with @section."""
