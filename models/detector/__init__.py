"""The detector: its interface, evidence streams (motion, appearance, prediction, ordinal), fitting to normal footage, frame scores from its maps, loading (runtime.py) and export."""
