"""Use cases of the console: assemble pages from the services and the read model."""
