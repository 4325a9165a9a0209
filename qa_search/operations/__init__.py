"""Operating an index directory: build, update, delete, reconfigure, calibrate, verify."""
