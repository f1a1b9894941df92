"""agent_trio.graph"""
