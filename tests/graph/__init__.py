"""Tests of the knowledge store and search (graph room)."""
