"""One camera's causal scoring state: frame history, running normalization, smoothing."""
