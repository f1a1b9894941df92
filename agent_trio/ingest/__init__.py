"""agent_trio.ingest"""
