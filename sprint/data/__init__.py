"""The data: where text and benchmarks come from (the hub, or the offline mirror) and the calibration windows
sampled from them."""
