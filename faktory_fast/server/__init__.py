"""A server process: the connections of Faktory's protocol and what each command does."""
