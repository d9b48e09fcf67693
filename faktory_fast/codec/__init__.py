"""Codecs and the network edge: Faktory's line protocol (wire), RESP (resp), TLS and PROXY
headers (net). They import nothing of the package."""
