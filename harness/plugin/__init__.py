"""The pytest plugin's parts; harness/pytest_plugin.py holds its hooks."""
