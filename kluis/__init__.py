"""Kluis: the shell around the domain packages (settings, database, web app, CLI)."""
