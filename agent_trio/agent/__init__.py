"""agent_trio.agent"""
