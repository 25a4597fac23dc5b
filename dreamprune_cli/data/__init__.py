"""Every image reader and lister: image files, degraded/clean pairs, clean sources,
degradations, synthetic sets and the adaptive allocator's calibration images."""
