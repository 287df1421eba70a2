"""Provides the screens of the Textual app (main dashboard, dialogs, help, results)."""
