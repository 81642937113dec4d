"""The steps after training: card, merge, export, push to a Hub, verify a pushed revision."""
