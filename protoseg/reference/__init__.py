"""Transcriptions of the official release, kept only to verify and benchmark our implementation."""
