"""Layer 7, presentation: the HTML report and terminal tables, and the offline asv dashboard.
Imports only the layers below; the CLI above calls it."""
