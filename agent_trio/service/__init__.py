"""agent_trio.service"""
