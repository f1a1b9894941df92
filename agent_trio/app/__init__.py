"""agent_trio.app"""
