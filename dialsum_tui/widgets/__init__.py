"""Provides the widgets of the Textual app; each renders plain data handed down by the app."""
