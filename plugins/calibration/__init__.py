"""The calibration family: post-hoc calibrators and the calibration task."""
