"""agent_trio.engine"""
