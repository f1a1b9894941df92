"""Support code of the tests: fakes, fixtures' helpers and checks shared by several modules.

Test modules import from here, never from one another.
"""
