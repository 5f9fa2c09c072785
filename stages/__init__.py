"""dramaforge stages: pure steps from script to episode."""
