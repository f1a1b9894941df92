"""agent_trio.upstream"""
