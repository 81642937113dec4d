"""Datasets: one spec for every command, columns, labels, splits."""
