"""The demo municipality and its fictitious residents."""
