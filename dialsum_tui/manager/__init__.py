"""The run manager: workspace, SQLite store, detached worker, guards, failure classes, results.

No Textual here: usable from a script, the CLI and tests alone.
"""
