"""`vigil eval` and `vigil train` on datasets: reading them, scoring videos as the service does, metrics, whole jobs, the online stream driver."""
