"""The inference worker: camera leases, batched scoring across cameras, alert hysteresis, alert categories."""
