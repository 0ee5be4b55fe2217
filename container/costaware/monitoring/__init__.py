"""After deployment: baselines, data capture, drift, realized cost, calibration and bias."""
