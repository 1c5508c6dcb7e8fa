"""The read side shared by the CLI and the dashboard: ``filters`` (filters → parameterised SQL),
``ai_stats`` (the agent report), ``export`` (keyset-streamed export, rows → OTLP/JSON)."""
