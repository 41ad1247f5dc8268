"""KFP lightweight component definitions. No learning logic lives here: each component body
only calls into the embedded runtime packages (server_component, client_component)."""
