"""What every cxrmap server shares: the JSON error shape, security headers, body limits, upload checks."""
