"""Report formats shared by every command: text, JSON, SARIF, JUnit."""
